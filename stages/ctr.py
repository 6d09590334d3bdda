"""`moon ctr`: the application stage — does a CTR model gain from frozen MOON embeddings?"""

import click

from moon_cli.options import Number, echo_summary, output_option, overwrite_option, quiet_option


def _ints(text: str, what: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        values = []
    if not values or values[0] < (1 if what == "lengths" else 0):
        raise click.BadParameter(f"'{text}' is not a comma-separated list of {what}, e.g. 2,8,32")
    return values


def _named(spec: str) -> tuple[str, str]:
    """LABEL=PATH, or PATH (labelled by the model recorded in its metadata, else its file name)."""
    if "=" in spec:
        label, path = spec.split("=", 1)
        if label.strip() and path.strip():
            return label.strip(), path.strip()
    return "", spec


@click.command("ctr")
@click.argument("behavior")
@click.option("--catalog", required=True, help="Catalogue Parquet (item ids and category paths).")
@click.option("-e", "--embeddings", "embeddings", multiple=True,
              help="[LABEL=]PATH of catalogue embeddings from `moon embed` (repeat to compare model versions).")
@output_option("Report directory: ctr.json (every run and the summary) and report.md.", kind="dir")
@click.option("--seq-lens", default="2,8,32", show_default=True, help="Behaviour-sequence lengths to compare.")
@click.option("--seeds", default="0,1,2", show_default=True,
              help="Seeds (each length × variant is trained once per seed).")
@click.option("--epochs", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--test-fraction", type=Number(0.05, 0.5), default=0.25, show_default=True,
              help="The latest sessions (by start time) held out as the test set.")
@overwrite_option
@quiet_option
def ctr(behavior, catalog, embeddings, output, seq_lens, seeds, epochs, test_fraction, overwrite, quiet):
    """Train a CTR model on BEHAVIOR's impressions (label = clicked), with and without frozen embeddings.

    Features: user, item and category IDs and the mean of the user's recent clicks' IDs; with
    --embeddings also a content module over those clicks — a histogram of the target item's cosine to
    each (SimTier) and target attention over projected embeddings. Split by time; reports test AUC and
    GAUC (per-user AUC weighted by impressions), mean ± std over seeds, per sequence length.

    \b
    Example (each runs in tests/test_docs.py):
      moon ctr world/behavior.parquet --catalog world/catalog.parquet -e model=embeddings.parquet \\
        -e untrained=untrained.parquet -e minilm=minilm.parquet -o ctr --seeds 0 --seq-lens 2,8
    """
    from moon_cli.ctr.experiment import run_ctr, write_ctr_report
    from moon_cli.ctr.run import CTRConfig, markdown
    from moon_cli.errors import MoonError

    if output.exists() and not overwrite and (not output.is_dir() or any(output.iterdir())):
        raise MoonError(f"{output}: already exists; pass --overwrite to replace it (or choose another output)")
    cfg = CTRConfig(seq_lens=_ints(seq_lens, "lengths"), seeds=_ints(seeds, "seeds"), epochs=epochs,
                    test_fraction=test_fraction)
    report = run_ctr(behavior, catalog, [_named(spec) for spec in embeddings], cfg, list(embeddings), quiet)
    write_ctr_report(output, report)
    click.echo(markdown(report["summary"]), nl=False)
    counts = report["data"]
    echo_summary(f"moon ctr: wrote {output}", {
        "impressions": f"{counts['train']} train, {counts['test']} test ({counts['clicks']} clicks)",
        "models": f"{len(report['runs'])} ({report['variants']} variant(s) × {len(cfg.seq_lens)} lengths × "
                  f"{len(cfg.seeds)} seeds)",
        "time": f"{report['seconds']:.1f} s",
    })
