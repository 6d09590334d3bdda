"""Real photos, no training data: text→photo, photo→text and photo→photo Recall on the real-photo bench.

    python benchmarks/bench_real.py OUT_DIR [-m [LABEL=]MODEL ...] [--bench DIR] [--debs DIR]

Builds the bench (benchmarks/real_photos.py: 309 photographs from Debian's GCompris and Kalzium packages with
their own names and descriptions) under OUT_DIR/bench unless --bench names one, evaluates every MODEL on
its three tasks in this one run (the same photos, the same queries), and writes OUT_DIR/report.md and
OUT_DIR/results.json: Recall@1 and Recall@10 with chance beside them, and each model's ratio to the ConSE
reference measured here. The default models are `mini` (untrained: its visual prior), the `conse` reference
and the one-modality baselines, which answer n/a for the modality they cannot read.

Targets (issue 29): `mini` text→photo and photo→text R@10 ≥ conse's (aim 1.25×), photo→photo ≥
efficientnet-lite0's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # as the moon command does

TASKS = (("text-to-photo", "text_to_product"), ("photo-to-text", "image_to_product"),
         ("photo-to-photo", "image_to_product"))
DEFAULT_MODELS = ("mini", "conse", "efficientnet-lite0", "minilm")
REFERENCE = "conse"


def measure(bench_root: Path, models: list[str], device: str) -> dict[str, dict[str, dict | None]]:
    """model → task → {recall@1, recall@10, chance@1, chance@10, n} (None where the model cannot read the
    task's queries or gallery)."""
    from moon_cli.embed.encoders import load_encoder
    from moon_cli.eval.bench import load_bench
    from moon_cli.eval.evaluate import evaluate

    benches = {name: load_bench(bench_root / name) for name, _ in TASKS}
    out: dict[str, dict[str, dict | None]] = {}
    for spec in models:
        label, _, model = spec.rpartition("=")
        label = label or model
        encoder = load_encoder(model, device)
        out[label] = {}
        for name, task in TASKS:
            start = time.perf_counter()
            r = evaluate(benches[name], encoder, quiet=True)["retrieval"].get(task)
            keep = None if r is None or "n/a" in r else {k: r[k] for k in ("recall@1", "recall@10", "chance@1",
                                                                            "chance@10", "n")}
            out[label][name] = keep
            print(f"bench_real: {label} {name}: "
                  f"{'n/a' if keep is None else format(keep['recall@10'], '.3f')} R@10 "
                  f"({time.perf_counter() - start:.0f} s)", file=sys.stderr)
        del encoder
    return out


def report(results: dict[str, dict[str, dict | None]], photos: int) -> str:
    ref = results.get(REFERENCE, {})
    lines = [f"# Real photos ({photos} photos with their own descriptions; Recall@1 / Recall@10, chance beside)", "",
             "| model | " + " | ".join(n for n, _ in TASKS) + f" | R@10 ÷ {REFERENCE} |",
             "|---|" + "---|" * (len(TASKS) + 1)]
    for model, tasks in results.items():
        cells, ratios = [], []
        for name, _ in TASKS:
            r = tasks.get(name)
            cells.append("n/a" if r is None else f"{r['recall@1']:.3f} / {r['recall@10']:.3f}")
            base = ref.get(name)
            if r is not None and base and base["recall@10"] > 0 and model != REFERENCE:
                ratios.append(f"{r['recall@10'] / base['recall@10']:.2f}×")
            else:
                ratios.append("–")
        lines.append(f"| {model} | " + " | ".join(cells) + " | " + " · ".join(ratios) + " |")
    chance = [next((t[n] for t in results.values() if t.get(n)), None) for n, _ in TASKS]
    lines.append("| chance | " + " | ".join("–" if c is None else f"{c['chance@1']:.3f} / {c['chance@10']:.3f}"
                                           for c in chance) + " | |")
    return "\n".join(lines) + "\n"


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("-m", "--model", action="append", dest="models",
                        help=f"a model, or LABEL=MODEL; repeatable [{' '.join(DEFAULT_MODELS)}]")
    parser.add_argument("--bench", type=Path, help="an existing real-photo bench [OUT/bench, built if absent]")
    parser.add_argument("--debs", type=Path, help="where the .deb files are kept [OUT/debs]")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    out = args.out.resolve()
    bench = (args.bench or out / "bench").resolve()
    if not (bench / "summary.json").is_file():
        import real_photos

        real_photos.build(bench, (args.debs or out / "debs").resolve())
    photos = json.loads((bench / "summary.json").read_text())["photos"]
    from moon_cli.errors import MoonError

    try:
        results = measure(bench, list(args.models or DEFAULT_MODELS), args.device)
    except MoonError as exc:
        sys.exit(f"bench_real: {exc}")
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps({"photos": photos, "bench": str(bench), "models": results},
                                                 indent=2) + "\n")
    table = report(results, photos)
    (out / "report.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
