"""`moon index`: embeddings → a LanceDB table with cosine search and a recall-checked ANN index."""

import click

from moon_cli.index.lance import INDEX_TYPES
from moon_cli.options import Number, echo_summary, output_option, overwrite_option, quiet_option


@click.command("index")
@click.argument("embeddings", nargs=-1, required=True)
@output_option("Index directory.", kind="dir")
@click.option("--index-type", type=click.Choice(INDEX_TYPES),
              default="auto", show_default=True,
              help="auto: exact below 100k rows, IVF_FLAT above (exact again if IVF misses --recall-target).")
@click.option("--recall-target", type=Number(0.0, 1.0), default=0.95, show_default=True,
              help="Search settings are the cheapest whose measured recall@10 reaches this.")
@click.option("--append", is_flag=True, help="Add rows to an existing index (same model only) and update it.")
@overwrite_option
@quiet_option
def index(embeddings, output, index_type, recall_target, append, overwrite, quiet):
    """Index one or more EMBEDDINGS Parquet files (from `moon embed`, all made by the same model).

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
    import pyarrow as pa

    from moon_cli.contracts import EMBEDDINGS
    from moon_cli.errors import MoonError
    from moon_cli.contracts import usable_embeddings
    from moon_cli.index.lance import build_index
    from moon_cli.io import read_table

    if output.exists() and any(output.iterdir()) and not (append or overwrite):
        raise MoonError(f"{output}: already holds an index; pass --append to add rows or --overwrite to rebuild")
    tables, model = [], None
    for path in embeddings:
        art = read_table(path, EMBEDDINGS)
        params = art.manifest.get("params", {})
        if "model_id" not in params:
            raise MoonError(f"{art.source}: no model identity in its metadata; embed it with `moon embed`")
        if model and params["model_id"] != model["model_id"]:
            raise MoonError(f"{art.source}: embedded by '{params['model_id']}' but {embeddings[0]} by "
                            f"'{model['model_id']}'; an index never mixes models")
        model = model or params
        t = art.table
        if "status" in t.column_names:
            t = t.filter(pa.compute.equal(t.column("status"), "ok")).drop_columns(["status", "error"])
        _check_width(t, int(model["dim"]), art.source)
        tables.append(t)
    table = pa.concat_tables(tables, promote_options="permissive")
    dim = int(model["dim"])
    table = table.set_column(table.schema.get_field_index("vector"), pa.field("vector", pa.list_(pa.float32(), dim)),
                             table.column("vector").cast(pa.list_(pa.float32(), dim)))
    table, dropped, first_bad = usable_embeddings(table)
    if table.num_rows == 0 and not append:
        raise MoonError("no ok rows to index" + (f" (left out: {_counts(dropped)})" if dropped else ""))
    report = build_index(table, output, model, index_type, append, recall_target)
    echo_summary(f"moon index: wrote {output}", {
        "model": f"{model['model']} ({model['model_id']}), dim {dim}",
        "rows": f"{report.rows} ({report.added} added)",
        **({"left out": _counts(dropped) + (f"; first bad vector: id {first_bad}" if first_bad else "")}
           if dropped else {}),
        "index": report.settings.describe(),
        "build": f"{report.build_seconds:.2f} s",
        "recall@10": f"{report.recall_at_10:.3f} vs exact search ({report.sample} sampled queries; target "
                     f"{report.recall_target:.2f}"
                     f"{'' if report.recall_at_10 >= report.recall_target else ', NOT reached'})",
        "latency": f"{report.ann_ms:.2f} ms/query (exact numpy: {report.exact_ms:.2f} ms)",
    })


def _counts(dropped: dict[str, int]) -> str:
    return ", ".join(f"{n} {reason}" for reason, n in dropped.items())


def _check_width(table, dim: int, source: str) -> None:
    """Every present vector has ``dim`` components (the manifest's); a wrong width names the file and row."""
    import pyarrow as pa

    from moon_cli.errors import MoonError

    vec = table.column("vector")
    if pa.types.is_fixed_size_list(vec.type) and vec.type.list_size == dim:
        return
    lengths = pa.compute.list_value_length(vec).to_pylist()
    for row, n in enumerate(lengths):
        if n is not None and n != dim:
            raise MoonError(f"{source}: row {row} (id {table.column('id')[row].as_py()}) has a {n}-wide vector, "
                            f"the file's metadata says dim {dim}; re-embed it with `moon embed`")
