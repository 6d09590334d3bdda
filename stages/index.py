"""`moon index`: embeddings → a LanceDB table with cosine search and a recall-checked ANN index."""

import click

from moon_cli.index.lance import INDEX_TYPES
from moon_cli.options import Number, echo_summary, output_option, overwrite_option, quiet_option


@click.command("index")
@click.argument("embeddings", nargs=-1, required=True)
@output_option("Index directory.", kind="dir")
@click.option("--index-type", type=click.Choice(INDEX_TYPES),
              default="auto", show_default=True,
              help="auto: exact below 100k rows, IVF_FLAT above (its best setting, with a warning, if none reaches "
                   "--recall-target: exact search at that size is too slow to serve).")
@click.option("--recall-target", type=Number(0.0, 1.0), default=0.95, show_default=True,
              help="Search settings are the cheapest whose measured recall@10 reaches this.")
@click.option("--append", is_flag=True, help="Add rows to an existing index (same model only) and update it.")
@overwrite_option
@quiet_option
def index(embeddings, output, index_type, recall_target, append, overwrite, quiet):
    """Index one or more EMBEDDINGS Parquet files or globs (from `moon embed`, all made by the same model; e.g.
    the shards of `moon embed --shard I/N`), or - (an Arrow stream), read in record batches.

    Rows with status error are left out, and so are rows whose vector is null, NaN or Inf and repeats of
    an id already indexed (the first row of an id is kept: one model gives one id one vector, so a repeat
    comes from overlapping inputs); the summary counts each. A new index is built beside OUTPUT and swapped
    in whole. The search settings (IVF probes, HNSW ef) are chosen by measurement: the cheapest whose
    recall@10 against exact search, on a sample of stored vectors (each one's own row left out), reaches
    --recall-target; they are stored with the index and used by every search.

    \b
    Example (each runs in tests/test_docs.py):
      moon index embeddings.parquet -o index
    """
    from moon_cli.errors import MoonError
    from moon_cli.index.lance import build_index, counts
    from moon_cli.index.stream import EmbeddingStream

    if output.exists() and any(output.iterdir()) and not (append or overwrite):
        raise MoonError(f"{output}: already holds an index; pass --append to add rows or --overwrite to rebuild")
    source = EmbeddingStream.open(list(embeddings))  # every input's model checked before a row is read
    model = source.model
    report = build_index(source, output, index_type, append, recall_target)
    dropped = source.dropped
    echo_summary(f"moon index: wrote {output}", {
        "model": f"{model['model']} ({model['model_id']}), dim {source.dim}",
        "rows": f"{report.rows} ({report.added} added)",
        "read": f"{source.rows_in} rows from {len(source.readers)} input(s), in batches of {source.batch_rows:,}",
        **({"left out": counts(dropped) + (f"; first bad vector: id {source.first_bad}" if source.first_bad else "")}
           if dropped else {}),
        "index": report.settings.describe(),
        "build": f"{report.build_seconds:.2f} s",
        "recall@10": f"{report.recall_at_10:.3f} vs exact search ({report.sample} sampled queries; target "
                     f"{report.recall_target:.2f}"
                     f"{'' if report.recall_at_10 >= report.recall_target else ', NOT reached'})",
        "latency": f"{report.ann_ms:.2f} ms/query (exact search: {report.exact_ms:.2f} ms)",
    })
    if report.note:
        from moon_cli.errors import warn

        warn(f"moon index: warning: {report.note}")
