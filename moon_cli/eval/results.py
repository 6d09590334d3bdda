"""Aggregate a reproduction run into results.md: the paper-shaped table (mean ± std over seeds), the CTR
table, the exchange rates, and plots.

    moon report reproduce RUN_DIR --title "..." --command "..." --seconds N

RUN_DIR is laid out as ``eval/layout.py`` says (``LAYOUTS["reproduce"]``): each version's ``metrics`` (from
`moon evaluate`) and training ``seconds``, optionally the ``ctr-report`` (`moon ctr`) and the ``exchange`` rates
(`moon exchange-rate -o`).
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import numpy as np

from moon_cli.errors import MoonError
from moon_cli.eval.colours import colours
from moon_cli.eval.evaluate import headline
from moon_cli.eval.exchange import rates_table
from moon_cli.eval.layout import RunLayout
from moon_cli.eval.report import COLUMNS, load_metrics


def collect(run_dir: Path) -> dict[str, list[dict[str, float | None]]]:
    """label → one headline dict per seed, in the order the variants first appear."""
    out: dict[str, list] = {}
    for _, metrics in RunLayout("reproduce", run_dir).find("metrics"):
        m = load_metrics(metrics.parent)  # a damaged file is one line naming it
        out.setdefault(m["label"], []).append(headline(m))
    return out


def train_seconds(run_dir: Path) -> dict[str, list[float]]:
    """version → the wall time of its training per seed (the layout's ``seconds``, written by reproduce.sh)."""
    out: dict[str, list[float]] = {}
    for fields, f in RunLayout("reproduce", run_dir).find("seconds"):
        out.setdefault(fields["version"], []).append(float(f.read_text()))
    return out


def paper_table(runs: dict[str, list[dict]], order: list[str], seconds: dict[str, list[float]] | None = None) -> str:
    timed = bool(seconds)
    head = "| model | " + " | ".join(COLUMNS.values()) + " | seeds |" + (" train time |" if timed else "")
    lines = [head, "|---" * (len(COLUMNS) + 2 + timed) + "|"]
    for label in [o for o in order if o in runs] + [r for r in runs if r not in order]:
        cells = []
        for col in COLUMNS:
            values = [h.get(col) for h in runs[label] if h.get(col) is not None]
            cells.append("n/a" if not values else f"{np.mean(values):.3f} ± {np.std(values):.3f}")
        line = f"| {label} | " + " | ".join(cells) + f" | {len(runs[label])} |"
        if timed:
            line += f" {np.mean(seconds[label]):.0f} s |" if label in seconds else " — |"
        lines.append(line)
    return "\n".join(lines) + "\n"


# the bar MOON is held to: it beats each of these on these columns by more than two standard deviations
# (the pretrained baselines on every task they can do; the dual encoder where one sequence should matter)
GOALS = {"minilm": list(COLUMNS), "efficientnet-lite0": list(COLUMNS),
         "dual": ["image_to_product", "multimodal_to_product", "product_to_product", "attributes"]}


def margin(ours: list[dict], theirs: list[dict], col: str) -> tuple[float, float] | None:
    """(mean difference, its standard deviation) of ``col``, ours − theirs; None where either cannot do it.

    Paired by seed when both rows have the same number of seeds (> 1): the std of the per-seed differences.
    Otherwise (a pretrained baseline, evaluated once) the std of ours over seeds."""
    a = [h.get(col) for h in ours]
    b = [h.get(col) for h in theirs]
    if any(v is None for v in a) or any(v is None for v in b) or not a or not b:
        return None
    if len(a) == len(b) > 1:
        d = np.array(a) - np.array(b)
        return float(d.mean()), float(d.std())
    return float(np.mean(a) - np.mean(b)), float(np.std(a))


def goal_table(runs: dict[str, list[dict]], ours: str = "moon", dual: str = "dual-encoder") -> str:
    """Does row ``ours`` beat each GOALS row (``dual`` for the dual encoder) on its columns by more than 2 σ?
    One line per (row, column)."""
    if ours not in runs:
        return ""
    lines = ["| against | task | difference (mean ± std) | verdict |", "|---|---|---|---|"]
    for other, cols in GOALS.items():
        other = dual if other == "dual" else other
        if other not in runs:
            continue
        for col in cols:
            m = margin(runs[ours], runs[other], col)
            if m is None:
                continue
            diff, sd = m
            if abs(diff) < 1e-9:
                verdict = "level"
            elif len(runs[ours]) < 2:  # no spread over seeds to measure the difference against
                verdict = "ahead (one seed: σ unknown)" if diff > 0 else "behind"
            else:
                verdict = ("beats it (> 2σ)" if diff > 2 * sd and diff > 0 else
                           "ahead, within 2σ" if diff > 0 else "behind")
            lines.append(f"| {other} | {COLUMNS[col]} | {diff:+.3f} ± {sd:.3f} | {verdict} |")
    return "\n".join(lines) + "\n" if len(lines) > 2 else ""


def plot(runs: dict[str, list[dict]], ctr: dict | None, out: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []
    labels = list(runs)
    fig, ax = plt.subplots(figsize=(11, 4))
    width = 0.8 / max(1, len(labels))
    colour = colours(labels)
    for i, label in enumerate(labels):
        means = [np.mean([h[c] for h in runs[label] if h.get(c) is not None] or [np.nan]) for c in COLUMNS]
        stds = [np.std([h[c] for h in runs[label] if h.get(c) is not None] or [np.nan]) for c in COLUMNS]
        ax.bar(np.arange(len(COLUMNS)) + i * width, means, width, yerr=stds, label=label, color=colour[label])
    ax.set_xticks(np.arange(len(COLUMNS)) + 0.4 - width / 2, list(COLUMNS.values()), fontsize=8)
    ax.set_ylabel("Recall@10 / accuracy")
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(out / "results.png", dpi=110)
    plt.close(fig)
    written.append("results.png")
    if ctr:
        fig, ax = plt.subplots(figsize=(6, 4))
        variants = colours(r["variant"] for r in ctr["summary"])
        for variant in variants:
            rows = sorted((r for r in ctr["summary"] if r["variant"] == variant), key=lambda r: r["seq_len"])
            ax.errorbar([r["seq_len"] for r in rows], [r["auc"] for r in rows], yerr=[r["auc_std"] for r in rows],
                        marker="o", capsize=3, label=variant, color=variants[variant])
        ax.set_xscale("log", base=2)
        ax.set_xlabel("behaviour-sequence length")
        ax.set_ylabel("test AUC")
        ax.legend(fontsize=7)
        fig.tight_layout()
        fig.savefig(out / "ctr_auc.png", dpi=110)
        plt.close(fig)
        written.append("ctr_auc.png")
    return written


def _json(path: Path, keys: tuple[str, ...], written_by: str) -> dict | None:
    """A report another stage wrote, if it is there (a damaged one is one line naming it)."""
    from moon_cli.io import read_json_report

    return read_json_report(path, keys, written_by) if path.is_file() else None


def write_results(run_dir: Path, title: str, command: str = "", seconds: float | None = None, order: str = "",
                  notes_file: Path | None = None, ours: str = "moon", dual: str = "dual-encoder") -> Path:
    """Write RUN_DIR's results.md and plots; returns the results.md path."""
    from moon_cli.ctr.run import markdown

    layout = RunLayout("reproduce", run_dir)
    runs = collect(run_dir)
    if not runs:
        raise MoonError(f"{run_dir}: holds no evaluation ({layout.templates['metrics']}); is it a `make reproduce` "
                        f"run folder?")
    wanted = [o for o in order.split(",") if o in runs]
    runs = {label: runs[label] for label in wanted + [r for r in runs if r not in wanted]}  # rows and bars in order
    ctr = _json(layout.path("ctr-report"), ("summary", "data"), "`moon ctr`")
    exchange = _json(layout.path("exchange"), ("rates", "best"), "`moon exchange-rate -o`")
    import torch

    hardware = (f"{platform.machine()}, {os.cpu_count()} CPU cores, "
                f"{'GPU ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'no GPU'}; "
                f"python {platform.python_version()}, torch {torch.__version__}")
    parts = [f"# {title}\n", f"- command: `{command}`" if command else "", f"- hardware: {hardware}",
             f"- wall time: {seconds / 60:.1f} min" if seconds else "", "",
             "## Bench (Recall@10 per retrieval task; mean zero-shot accuracy), mean ± std over seeds\n",
             paper_table(runs, [o for o in order.split(",") if o], train_seconds(run_dir))]
    pretrain = [f for fields, f in layout.find("seconds") if fields["version"] == "pretrain"]
    if pretrain:
        parts.append(f"Train time: post-training wall time per version (mean over seeds). The shared pre-training "
                     f"(`pretrain` row: stage 1 alone, first seed) took "
                     f"{np.mean([float(f.read_text()) for f in pretrain]):.0f} s per seed.\n")
    goals = goal_table(runs, ours, dual)
    if goals:
        parts += [f"## Goal: MOON (`{ours}`) beats the off-the-shelf models and the dual encoder (`{dual}`) by "
                  f"more than 2σ\n",
                  "σ: the std of the per-seed differences against the dual encoder (same seeds); against a "
                  "pretrained baseline (evaluated once), MOON's std over seeds.\n", goals]
    if ctr:
        parts += ["## CTR with frozen embeddings (`moon ctr`), test AUC / GAUC, mean ± std over CTR seeds\n",
                  f"Impressions: {ctr['data']['train']} train, {ctr['data']['test']} test "
                  f"(time split at {ctr['data']['test from']}).\n", markdown(ctr["summary"])]
    if exchange:
        parts += ["## Exchange rate (`moon exchange-rate`): ΔAUC vs ids only at sequence length "
                  f"{exchange['seq_len']}\n",
                  rates_table(exchange["rates"], exchange.get("downstream", "auc")), "Translates best: "
                                                                                     f"**{COLUMNS[exchange['best']]}**.\n"]
    images = plot(runs, ctr, run_dir)
    parts += ["## Plots\n"] + [f"![{i}]({i})" for i in images]
    if notes_file:
        parts += ["", notes_file.read_text()]
    out = layout.path("results")
    out.write_text("\n".join(p for p in parts if p is not None) + "\n")
    return out
