"""`moon exchange-rate`: which offline metric translates into downstream CTR gain, across model versions."""

import json
from pathlib import Path

import click

from moon_cli.options import echo_summary, output_option, overwrite_option


@click.command("exchange-rate")
@click.argument("eval_dirs", nargs=-1, required=True, type=click.Path(file_okay=False, path_type=Path))
@click.option("--ctr", "ctr_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Report directory of `moon ctr` run with each version's embeddings (-e LABEL=...).")
@click.option("--seq-len", type=int, default=None, help="CTR sequence length to read [default: the longest].")
@click.option("--downstream", type=click.Choice(["auc", "gauc"]), default="auc", show_default=True)
@output_option("Also write the rates and the versions' figures as JSON here.", kind="file", required=False)
@overwrite_option
def exchange_rate(eval_dirs, ctr_dir, seq_len, downstream, output, overwrite):
    """Exchange rate of each intermediate metric for the CTR gain, across model versions.

    EVAL_DIRS are `moon evaluate` report directories, one per model version; each is matched to the CTR
    variant with the same label. For every bench metric (Recall@10 per retrieval task, mean accuracy of
    classification / attributes): the slope of Δ downstream AUC (vs the ID-only CTR model) against the
    metric, R², and Spearman's rank correlation. The metric that ranks the versions best translates best.

    \b
    Example (each runs in tests/test_docs.py):
      moon exchange-rate eval/model eval/untrained eval/minilm --ctr ctr -o exchange.json
    """
    import numpy as np

    from moon_cli.errors import MoonError
    from moon_cli.eval.evaluate import headline
    from moon_cli.eval.exchange import exchange_rates, format_or_na, rates_table
    from moon_cli.eval.report import COLUMNS, load_metrics
    from moon_cli.io import atomic_file, ensure_new_output, output_lock, read_json_report

    if output:
        ensure_new_output(output, overwrite)  # before any work
    if not (ctr_dir / "ctr.json").is_file():
        raise MoonError(f"{ctr_dir}: no ctr.json; --ctr takes a report directory written by `moon ctr`")
    summary = read_json_report(ctr_dir / "ctr.json", ("summary",),
                               "`moon ctr` (--ctr takes its report directory)")["summary"]
    if not summary:
        raise MoonError(f"{ctr_dir / 'ctr.json'}: holds no CTR results; re-run `moon ctr`")
    lengths = sorted({r["seq_len"] for r in summary})
    seq_len = seq_len or lengths[-1]
    if seq_len not in lengths:
        raise MoonError(f"--seq-len {seq_len}: the CTR report has lengths {lengths}")
    gain = {r["variant"]: r[f"delta_{downstream}"] for r in summary if r["seq_len"] == seq_len}
    versions, unmatched = [], []
    for d in eval_dirs:
        m = load_metrics(d)
        if m["label"] not in gain:
            unmatched.append(m["label"])
            continue
        versions.append({"label": m["label"], "downstream": gain[m["label"]], "metrics": headline(m)})
    if unmatched:
        raise MoonError(f"evaluation label(s) {unmatched} have no CTR variant in {ctr_dir} (it has "
                        f"{sorted(gain)}); run `moon ctr` with -e LABEL=EMBEDDINGS using the same labels")
    if len(versions) < 3:
        raise MoonError(f"{len(versions)} model version(s): an exchange rate needs at least 3 (4+ to trust it)")
    rows = exchange_rates(versions, list(COLUMNS))
    click.echo(rates_table(rows, downstream), nl=False)
    best = rows[0]
    if output:
        with output_lock(output), atomic_file(output) as tmp:
            tmp.write_text(json.dumps({"seq_len": seq_len, "downstream": downstream, "versions": versions,
                                       "rates": rows, "best": best["metric"]}, indent=2) + "\n")
    spread = np.ptp([v["downstream"] for v in versions])
    echo_summary("moon exchange-rate", {
        "versions": f"{len(versions)} ({', '.join(v['label'] for v in versions)})",
        "downstream": f"Δ{downstream.upper()} vs ids only at sequence length {seq_len} (spread {spread:.4f})",
        "translates best": f"{COLUMNS[best['metric']]} (Spearman {format_or_na(best['spearman'], '+.2f')})",
    })
