"""metrics.json → report.md (tables, optionally side by side with other runs) and PNG plots."""

from __future__ import annotations

from pathlib import Path

from moon_cli.eval.bench import RETRIEVAL_TASKS
from moon_cli.eval.colours import colours
from moon_cli.eval.evaluate import headline

COLUMNS = {"image_to_product": "image→product", "text_to_product": "text→product",
           "multimodal_to_product": "multimodal→product", "product_to_product": "product→product",
           "classification": "classification", "attributes": "attributes"}


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def _with_chance(v, chance) -> str:
    return _fmt(v) if chance is None else f"{_fmt(v)} ({chance:.3f})"


def _delta(v, base) -> str:
    if v is None or base is None:
        return _fmt(v)
    return f"{v:.3f} ({v - base:+.3f})"


def load_metrics(report_dir: Path) -> dict:
    from moon_cli.errors import MoonError
    from moon_cli.io import read_json_report

    if not (Path(report_dir) / "metrics.json").is_file():
        raise MoonError(f"{report_dir}: no metrics.json; --compare takes report directories written by `moon evaluate`")
    return read_json_report(Path(report_dir) / "metrics.json", ("label", "retrieval"), "`moon evaluate`")


def summary_table(runs: list[dict]) -> str:
    """Rows = models, columns = the paper's tasks (Recall@10; mean accuracy); deltas against the first row."""
    heads = [headline(r) for r in runs]
    cols = [c for c in COLUMNS if any(c in h for h in heads)]
    lines = ["| model | " + " | ".join(COLUMNS[c] for c in cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for i, (run, h) in enumerate(zip(runs, heads)):
        cells = [_fmt(h.get(c)) if i == 0 else _delta(h.get(c), heads[0].get(c)) for c in cols]
        lines.append(f"| {run['label']} | " + " | ".join(cells) + " |")
    lines.append("| chance | " + " | ".join(_fmt(chance_of(runs[0], c)) for c in cols) + " |")
    return "\n".join(lines)


def chance_of(run: dict, column: str) -> float | None:
    """A uniform guess's score in a headline column: Recall@10 at random, or the mean of the label tasks'
    chance levels."""
    if column in run["retrieval"]:
        r = run["retrieval"][column]
        return r.get("chance@10", min(1.0, 10 / run["gallery"]) if run.get("gallery") else None)
    values = [v["chance"] for v in run.get(column, {}).values() if "chance" in v]
    return sum(values) / len(values) if values else None


def detail_tables(run: dict) -> str:
    out = []
    ret = run["retrieval"]
    if ret:
        out += ["| task | n | R@1 | R@5 | R@10 | MRR | nDCG@10 |", "|---|---|---|---|---|---|---|"]
        for task in RETRIEVAL_TASKS:
            r = ret.get(task)
            if r is None:
                continue
            if "n/a" in r:
                out.append(f"| {COLUMNS[task]} | {r['n']} | n/a | n/a | n/a | n/a | n/a |")
                continue
            chance = {k: r.get(f"chance@{k[-2:].lstrip('@')}") for k in ("recall@1", "recall@5", "recall@10")}
            out.append(f"| {COLUMNS[task]} | {r['n']} | " + " | ".join(
                _with_chance(r[k], chance.get(k)) for k in ("recall@1", "recall@5", "recall@10", "mrr", "ndcg@10"))
                + " |")
        out += ["", "Recall@K is followed by its chance level in brackets: K over the gallery's size.", ""]
    for group in ("classification", "attributes"):
        if run[group]:
            out += [f"| {group} | n | classes | accuracy | raw argmax | top-label share | chance | majority |",
                    "|---|---|---|---|---|---|---|---|"]
            for name, r in run[group].items():
                out.append(f"| {name} | {r.get('n', '')} | {r.get('classes', '')} | " + " | ".join(
                    _fmt(r.get(k)) for k in ("accuracy", "accuracy_raw", "top_label_share", "chance", "majority"))
                    + " |")
            out.append("")
    if any(run[g] for g in ("classification", "attributes")):
        out += ["Accuracy centres product vectors by the gallery mean and label vectors by their set's mean "
                "(bias-free); raw argmax is the plain nearest label; top-label share is how many products got "
                "the most-predicted label.", ""]
    return "\n".join(out)


def write_report(report_dir: Path, run: dict, others: list[dict]) -> None:
    runs = [run] + others
    md = [f"# moon evaluate: {run['label']}", "",
          f"Bench `{run['bench']}`, gallery {run['gallery']} products; model `{run['model']}` ({run['model_id']}). "
          f"Retrieval columns are Recall@10, label columns mean accuracy over levels / attribute types"
          + (f"; other rows show the difference to `{run['label']}`." if others else "."), "",
          summary_table(runs), "", "## Details", "", detail_tables(run)]
    for note in run.get("notes", []):
        md.append(f"- note: {note}")
    md += ["", "![Recall@K](recall_at_k.png)", "", "![Accuracy](accuracy.png)", ""]
    (report_dir / "report.md").write_text("\n".join(md))
    plot(report_dir, runs)


def recall_figure(runs: list[dict]):
    """Recall@K curves, one panel per retrieval task. A run keeps its colour in every panel, and the one
    legend (under the panels) names every run: a baseline without a task's modality has no curve there."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    colour = colours(r["label"] for r in runs)
    tasks = [t for t in RETRIEVAL_TASKS if any("curve" in r["retrieval"].get(t, {}) for r in runs)]
    fig, axes = plt.subplots(1, max(1, len(tasks)), figsize=(4 * max(1, len(tasks)), 3.8), squeeze=False)
    for ax, task in zip(axes[0], tasks):
        for r in runs:
            curve = r["retrieval"].get(task, {}).get("curve")
            if curve:
                ax.plot(range(1, len(curve) + 1), curve, color=colour[r["label"]], label=r["label"])
            else:
                ax.plot([], [], color=colour[r["label"]], label=f"{r['label']} (n/a)")
        ax.set_title(COLUMNS[task]); ax.set_xlabel("K"); ax.set_ylabel("Recall@K"); ax.set_ylim(0, 1)  # noqa: E702
        ax.grid(alpha=0.3)
    handles = [Line2D([], [], color=c, label=label) for label, c in colour.items()]
    fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 5), fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.06 + 0.04 * ((len(handles) - 1) // 5), 1, 1))
    return fig


def plot(report_dir: Path, runs: list[dict]) -> None:
    import matplotlib.pyplot as plt

    fig = recall_figure(runs)
    fig.savefig(report_dir / "recall_at_k.png", dpi=110)
    plt.close(fig)

    names = [(g, n) for g in ("classification", "attributes") for n in runs[0][g]]
    fig, ax = plt.subplots(figsize=(max(5, 0.9 * len(names) * len(runs) ** 0.5 + 2), 3.4))
    width = 0.8 / max(1, len(runs))
    colour = colours(r["label"] for r in runs)
    for i, r in enumerate(runs):
        vals = [r[g].get(n, {}).get("accuracy") or 0.0 for g, n in names]
        ax.bar([x + i * width for x in range(len(names))], vals, width, label=r["label"], color=colour[r["label"]])
    for x, (g, n) in enumerate(names):  # chance: a uniform guess among the task's labels
        chance = runs[0][g][n].get("chance")
        if chance is not None:
            ax.hlines(chance, x - width / 2, x + width * (len(runs) - 0.5), colors="k", linestyles=":", linewidth=1,
                      label="chance" if x == 0 else None)
    ax.set_xticks([x + width * (len(runs) - 1) / 2 for x in range(len(names))], [n for _, n in names], rotation=30)
    ax.set_ylabel("accuracy"); ax.set_ylim(0, 1); ax.legend(fontsize=7); ax.set_title("zero-shot accuracy")  # noqa: E702
    fig.tight_layout()
    fig.savefig(report_dir / "accuracy.png", dpi=110)
    plt.close(fig)
