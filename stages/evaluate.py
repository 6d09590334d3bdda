"""`moon evaluate`: the MBE-style bench for one model → metrics.json, report.md, PNG plots."""

import json
from pathlib import Path

import click

from moon_cli.options import device_option, model_option, output_option, overwrite_option, quiet_option


@click.command("evaluate")
@click.argument("bench_dir", type=click.Path(file_okay=False, path_type=Path))
@model_option("The model to evaluate.")
@output_option("Report directory.", kind="dir")
@click.option("--detections", default=None, help="Crops for the gallery photos (from `moon detect`).")
@click.option("--label", default=None, help="Name of this run in tables (default: the model).")
@click.option("--compare", multiple=True, type=click.Path(file_okay=False, path_type=Path),
              help="Other report directories to show side by side (repeatable).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@device_option()
@overwrite_option
@quiet_option
def evaluate(bench_dir, model_name, output, detections, label, compare, batch_size, device, overwrite, quiet):
    """Evaluate MODEL on BENCH_DIR (e.g. WORLD/bench): Recall@1/5/10, MRR, nDCG@10 for image, text,
    multimodal and product queries; zero-shot category accuracy per level and attribute accuracy per
    type. A missing task file skips that task with a warning.

    \b
    Example (each runs in tests/test_docs.py):
      moon evaluate world/bench -m model --detections detections.parquet -o eval/model --label model
      moon evaluate world/bench -m tiny -o eval/untrained --label untrained
      moon evaluate world/bench -m minilm -o eval/minilm --label minilm --compare eval/model --compare eval/untrained
    """
    from moon_cli.contracts import DETECTIONS
    from moon_cli.devices import choose_device
    from moon_cli.embed.encoders import load_encoder
    from moon_cli.eval.bench import load_bench
    from moon_cli.eval.evaluate import evaluate as run_eval
    from moon_cli.eval.evaluate import headline
    from moon_cli.eval.report import load_metrics, summary_table, write_report
    from moon_cli.model.card import record_evaluation
    from moon_cli.model.resolve import resolve
    from moon_cli.io import atomic_dir, ensure_new_dir, read_table

    device = choose_device(device)
    ensure_new_dir(output, overwrite)  # before the evaluation, not after it
    others = [load_metrics(c) for c in compare]
    bench = load_bench(bench_dir)
    ref = resolve(model_name)
    encoder = load_encoder(ref, device)
    det = read_table(detections, DETECTIONS).table if detections else None
    results = run_eval(bench, encoder, det, batch_size, quiet)
    run = {"label": label or model_name, "model": model_name, "model_id": encoder.model_id, "bench": str(bench_dir),
           "skipped_tasks": bench.skipped, **results}
    with atomic_dir(output, overwrite=overwrite) as tmp:
        (tmp / "metrics.json").write_text(json.dumps(run, indent=2) + "\n")
        write_report(tmp, run, others)
    if ref.kind == "checkpoint":  # the model card shows the bench figures it was measured at
        try:
            record_evaluation(Path(model_name), str(bench_dir), headline(run))
        except OSError as exc:  # a read-only model directory: the report is written, the card stays as it was
            click.echo(f"moon evaluate: warning: could not note the figures in {model_name}'s card ({exc.strerror})",
                       err=True)
    click.echo(f"moon evaluate: wrote {output} ({results['seconds']:.1f} s)", err=True)
    click.echo(summary_table([run] + others))
