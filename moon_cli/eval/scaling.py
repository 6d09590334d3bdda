"""Scaling study: bench quality against training samples and negatives, CTR gain against sequence length;
power laws y = a·x^b fitted in log–log space where they fit.

    moon report scaling RUN_DIR --command "..." --seconds N

RUN_DIR is laid out as ``eval/layout.py`` says (``LAYOUTS["scaling"]``): a ``point-metrics`` per sweep point
(sweep ``tokens``: x = samples seen; ``negatives``: x = the negative pool; from `moon evaluate`) and the
``ctr-report`` (`moon ctr` over many sequence lengths).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from moon_cli.errors import MoonError
from moon_cli.eval.colours import colours
from moon_cli.eval.evaluate import headline
from moon_cli.eval.layout import RunLayout
from moon_cli.eval.report import COLUMNS, load_metrics
from moon_cli.io import read_json_report

CURVES = ("image_to_product", "text_to_product", "product_to_product")
GOOD_FIT = 0.8  # R² in log–log space above which we call it a power law


def power_law(x, y) -> dict:
    """Least squares of log y = log a + b log x; no fit with fewer than 3 points or any y ≤ 0 (fitting only the
    positive part of a curve would flatter it)."""
    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) < 3 or (x <= 0).any() or (y <= 0).any():
        return {"a": None, "b": None, "r2": None, "fits": False}
    lx, ly = np.log(x), np.log(y)
    b, log_a = np.polyfit(lx, ly, 1)
    resid = ly - (b * lx + log_a)
    r2 = 1 - resid.var() / ly.var() if ly.var() > 0 else 0.0
    return {"a": float(np.exp(log_a)), "b": float(b), "r2": float(r2), "fits": bool(r2 >= GOOD_FIT)}


def spearman(x, y) -> float:
    """Rank correlation (no ties expected in a sweep's x); 0.0 when either side is constant."""
    rx, ry = np.argsort(np.argsort(x)), np.argsort(np.argsort(y))
    if rx.std() == 0 or ry.std() == 0:
        return 0.0
    return float(np.corrcoef(rx, ry)[0, 1])


def recall_noise(first: float, last: float, n: int | None) -> float | None:
    """Two standard errors of the difference of two Recall@10 figures over ``n`` queries each (binomial)."""
    if not n:
        return None
    return 2 * float(np.sqrt((first * (1 - first) + last * (1 - last)) / n))


def verdict(x, y, fit: dict, noise: float | None = None) -> str:
    """Does "quality grows with x, as a power law" hold on these points? Growth is judged by rank correlation
    and by the last point beating the first, so one noisy middle point neither makes nor breaks it — and by
    more than ``noise`` (the bench's sampling noise on that difference), so a flat curve is not called growth."""
    rho = spearman(np.asarray(x, float), np.asarray(y, float))
    if noise is not None and rho > 0 and 0 < y[-1] - y[0] <= noise:
        return (f"not shown: it rises {y[0]:.3f} → {y[-1]:.3f} (Spearman ρ {rho:+.2f}), within the bench's sampling "
                f"noise (±{noise:.3f})")
    grows = rho > 0 and y[-1] > y[0]
    if grows and fit["fits"] and fit["b"] > 0:
        return f"holds (power law, exponent {fit['b']:.2f}, R² {fit['r2']:.2f})"
    if grows:
        return f"partly: grows (Spearman ρ {rho:+.2f}, {y[0]:.3f} → {y[-1]:.3f}) but not as a clean power law"
    return f"does not hold here (Spearman ρ {rho:+.2f}, {y[0]:.3f} → {y[-1]:.3f})"


def sweep(run_dir: Path, name: str) -> list[tuple[float, dict]]:
    """(x, headline metrics) per run of a sweep; the headline also carries each task's query count (``n:TASK``)."""
    points = []
    for fields, metrics in RunLayout("scaling", run_dir).find("point-metrics"):
        if fields["sweep"] != name:
            continue
        raw = load_metrics(metrics.parent)  # a damaged file is one line naming it
        counts = {f"n:{task}": r.get("n") for task, r in raw.get("retrieval", {}).items()}
        points.append((float(fields["x"]), {**headline(raw), **counts}))
    return sorted(points, key=lambda p: p[0])


def _fmt_fit(f: dict) -> str:
    if f["b"] is None:
        return "no power law: fewer than 3 points, or values ≤ 0"
    return f"y = {f['a']:.3g}·x^{f['b']:.3f} (R² {f['r2']:.2f}{'' if f['fits'] else ', not a power law'})"


def section(title: str, xlabel: str, points: list[tuple[float, dict]], fits: dict, claim: str) -> list[str]:
    lines = [f"## {title}\n", f"| {xlabel} | " + " | ".join(COLUMNS[c] for c in CURVES) + " |",
             "|---" * (len(CURVES) + 1) + "|"]
    for x, h in points:
        lines.append(f"| {x:g} | " + " | ".join("n/a" if h.get(c) is None else f"{h[c]:.3f}" for c in CURVES) + " |")
    lines.append("")
    lines += [f"- {COLUMNS[c]}: {_fmt_fit(fits[c])}" for c in CURVES]
    if len(points) >= 2:
        lines += ["", f"Verdict on the paper's claim that {claim}:"]
        for c in CURVES:
            y = [h.get(c) or 0 for _, h in points]
            noise = recall_noise(y[0], y[-1], points[0][1].get(f"n:{c}"))
            lines.append(f"- {COLUMNS[c]}: " + verdict([x for x, _ in points], y, fits[c], noise))
    return lines + [""]


def write_scaling(run_dir: Path, command: str = "", seconds: float | None = None) -> Path:
    """Write RUN_DIR's scaling.md, scaling.json and scaling.png; returns the scaling.md path."""
    layout = RunLayout("scaling", run_dir)
    if not layout.find("point-metrics"):
        raise MoonError(f"{run_dir}: holds no sweep point ({layout.templates['point-metrics']}); is it a "
                        f"`make scaling` run folder?")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    report = {}
    parts = ["# Scaling study\n", f"- command: `{command}`" if command else "",
             f"- wall time: {seconds / 60:.1f} min" if seconds else "", ""]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    sweeps = (("tokens", "Training samples (steps × batch)", "samples seen",
               "retrieval quality grows as a power law in training samples"),
              ("negatives", "Negatives per query (in-batch + hard)", "negative pool",
               "retrieval quality grows as a power law in the number of negatives"))
    for ax, (name, title, xlabel, claim) in zip(axes[:2], sweeps):
        points = sweep(run_dir, name)
        fits = {c: power_law([x for x, _ in points], [h.get(c) or 0 for _, h in points]) for c in CURVES}
        report[name] = {"points": [{"x": x, **h} for x, h in points], "fits": fits}
        parts += section(title, xlabel, points, fits, claim)
        for c in CURVES:
            ax.plot([x for x, _ in points], [h.get(c) for _, h in points], marker="o", label=COLUMNS[c])
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("Recall@10")
        ax.set_title(title, fontsize=9)
        ax.legend(fontsize=7)
    ctr_path = layout.path("ctr-report")
    if ctr_path.is_file():
        rows = [r for r in read_json_report(ctr_path, ("summary",), "`moon ctr`")["summary"]
                if r["delta_auc"] is not None and r["variant"] != "ids only"]
        variants = colours(r["variant"] for r in rows)
        for variant in variants:
            pts = sorted((r["seq_len"], r["delta_auc"], r["auc_std"]) for r in rows if r["variant"] == variant)
            fit = power_law([p[0] for p in pts], [p[1] for p in pts])
            report.setdefault("ctr", {})[variant] = {"points": pts, "fit": fit}
            parts += [f"## CTR gain from `{variant}` embeddings vs behaviour-sequence length\n",
                      "| sequence length | ΔAUC vs ids only | AUC std over seeds |", "|---|---|---|"]
            parts += [f"| {L} | {d:+.4f} | {s:.4f} |" for L, d, s in pts]
            parts += ["", f"- ΔAUC: {_fmt_fit(fit)}"]
            if len(pts) >= 2:
                claim = "the CTR gain from content embeddings grows with the behaviour-sequence length"
                noise = 2 * float(np.sqrt(pts[0][2] ** 2 + pts[-1][2] ** 2))  # over the seeds' spread
                parts += [f"- Verdict on the paper's claim that {claim}: "
                          + verdict([p[0] for p in pts], [p[1] for p in pts], fit, noise)
                          + f"; the largest ΔAUC is {max(p[1] for p in pts):+.4f} against a seed std of about "
                          f"{np.mean([p[2] for p in pts]):.4f}"]
            parts += [""]
            axes[2].errorbar([p[0] for p in pts], [p[1] for p in pts], yerr=[p[2] for p in pts], marker="o",
                             capsize=3, label=variant, color=variants[variant])
        axes[2].set_xscale("log", base=2)
        axes[2].set_xlabel("behaviour-sequence length")
        axes[2].set_ylabel("ΔAUC vs ids only")
        axes[2].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(run_dir / "scaling.png", dpi=110)
    plt.close(fig)
    parts += ["![scaling](scaling.png)"]
    (run_dir / "scaling.json").write_text(json.dumps(report, indent=2) + "\n")
    out = layout.path("results")
    out.write_text("\n".join(parts) + "\n")
    return out
