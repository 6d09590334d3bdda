"""`moon ctr`: the application stage — does a CTR model gain from frozen MOON embeddings?"""

import json
from pathlib import Path

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
@click.option("--seeds", default="0,1,2", show_default=True, help="Seeds (each length × variant is trained once per seed).")
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
    import time
    from dataclasses import asdict

    from moon_cli.progress import progress

    from moon_cli.contracts import BEHAVIOR, CATALOG, EMBEDDINGS, usable_embeddings, vectors_to_numpy
    from moon_cli.ctr.data import build_ctr_data
    from moon_cli.ctr.run import ID_ONLY, CTRConfig, content_table, fit_and_score, markdown, summarise
    from moon_cli.errors import MoonError
    from moon_cli.io import atomic_dir, read_table

    if output.exists() and not overwrite and (not output.is_dir() or any(output.iterdir())):
        raise MoonError(f"{output}: already exists; pass --overwrite to replace it (or choose another output)")
    cfg = CTRConfig(seq_lens=_ints(seq_lens, "lengths"), seeds=_ints(seeds, "seeds"), epochs=epochs,
                    test_fraction=test_fraction)
    t0 = time.perf_counter()
    data = build_ctr_data(read_table(behavior, BEHAVIOR).table, read_table(catalog, CATALOG).table,
                          max(cfg.seq_lens), cfg.test_fraction, source=behavior)
    variants = {ID_ONLY: None}
    coverage = {}
    for spec in embeddings:
        label, path = _named(spec)
        art = read_table(path, EMBEDDINGS, columns=["id", "vector"])
        label = label or art.manifest.get("params", {}).get("model") or Path(path).stem
        if label in variants:
            raise MoonError(f"--embeddings {spec}: the label '{label}' is used twice; name them LABEL=PATH")
        usable, dropped, _ = usable_embeddings(art.table)  # null / NaN / zero vectors count as missing items
        table, missing = content_table(data, usable.column("id").to_pylist(),
                                       vectors_to_numpy(usable.column("vector"), path))
        if missing == len(data.item_ids):
            raise MoonError(f"{path}: none of its ids is a catalogue item_id with a usable vector; embed the "
                            f"catalogue given to --catalog" + (f" (left out: {dropped})" if dropped else ""))
        variants[label] = table
        coverage[label] = f"{len(data.item_ids) - missing} of {len(data.item_ids)} items" + (
            "; left out: " + ", ".join(f"{n} {why}" for why, n in dropped.items()) if dropped else "")

    runs = []
    jobs = [(v, L, s) for v in variants for L in cfg.seq_lens for s in cfg.seeds]
    for variant, seq_len, seed in progress(jobs, desc="ctr", unit="model", quiet=quiet, leave=False):
        runs.append({"variant": variant, "seq_len": seq_len, "seed": seed,
                     **fit_and_score(data, variants[variant], seq_len, seed, cfg)})
    rows = summarise(runs)
    report = {"behavior": behavior, "catalog": catalog, "embeddings": list(embeddings), "coverage": coverage,
              "config": asdict(cfg), "data": {**data.counts, "test from": str(data.cut)}, "runs": runs, "summary": rows}
    with atomic_dir(output, overwrite=True) as tmp:
        (tmp / "ctr.json").write_text(json.dumps(report, indent=2, default=str) + "\n")
        (tmp / "report.md").write_text(f"# CTR with frozen embeddings\n\nTest impressions from {data.cut} "
                                       f"(time split); mean ± std over seeds {cfg.seeds}.\n\n" + markdown(rows))
    click.echo(markdown(rows), nl=False)
    seconds = time.perf_counter() - t0
    echo_summary(f"moon ctr: wrote {output}", {
        "impressions": f"{data.counts['train']} train, {data.counts['test']} test ({data.counts['clicks']} clicks)",
        "models": f"{len(runs)} ({len(variants)} variant(s) × {len(cfg.seq_lens)} lengths × {len(cfg.seeds)} seeds)",
        "time": f"{seconds:.1f} s",
    })
