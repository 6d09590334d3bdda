"""`moon search`: embed text / image queries and print the nearest products as JSON lines."""

import json
from pathlib import Path

import click

from moon_cli.options import device_option, memory_option, model_option


@click.command("search")
@click.argument("index_dir", type=click.Path(file_okay=False, path_type=Path))
@model_option("The model that made the index's vectors.", kinds=False)
@click.option("--text", default=None, help="Query text.")
@click.option("--image", type=click.Path(dir_okay=False), default=None, help="Query image.")
@click.option("--queries", "queries_path", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Many queries: Parquet or JSON lines with text / image (or query_text / query_image) and an "
                   "optional id; - reads JSON lines from stdin.")
@click.option("--where", default=None, help="LanceDB SQL filter on the stored columns, e.g. "
                                            "\"array_has(category_path, 'tee')\".")
@click.option("-k", "k", type=click.IntRange(min=1, max=1000), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Queries embedded and searched per call (--queries).")
@memory_option()
@device_option()
def search(index_dir, model_name, text, image, queries_path, where, k, batch_size, memory, device):
    """Search INDEX_DIR with --text, --image or both (one JSON object per hit on stdout: id, score, stored
    columns), or with --queries FILE (one JSON line per query: its id and its hits, or its error).

    \b
    Example (each runs in tests/test_docs.py):
      moon search index -m model --text "red cotton tee" -k 5 --where "array_has(category_path, 'Apparel')"
      moon search index -m model --queries world/bench/text_queries.parquet -k 10
    """
    from moon_cli.devices import choose_device
    from moon_cli.errors import MoonError
    from moon_cli.serve.engine import SearchEngine

    if queries_path and (text or image):
        raise MoonError("give --queries, or --text / --image, not both")
    if not (text or image or queries_path):
        raise MoonError("give --text, --image or both, or --queries FILE")
    device = choose_device(device)
    queries = read_queries(queries_path) if queries_path else None
    engine = SearchEngine(index_dir, model_name, memory=memory, device=device)
    if queries is None:
        result = engine.search([{"id": "query", "text": text, "image": image}], k, where)[0]
        if "error" in result:
            raise MoonError(result["error"])
        for hit in result["hits"]:
            click.echo(json.dumps(hit, default=str))
        return
    failed = 0
    for start in range(0, len(queries), batch_size):
        batch = queries[start:start + batch_size]
        for query, result in zip(batch, engine.search(batch, k, where)):
            failed += "error" in result
            click.echo(json.dumps({"id": query["id"], **result}, default=str))
    if failed == len(queries):
        raise MoonError(f"{queries_path}: none of its {len(queries)} queries could be embedded")


def read_queries(path: str) -> list[dict]:
    """Queries from Parquet or JSON lines: {"id", "text", "image"}; image paths relative to the file's folder."""
    import sys

    from moon_cli.errors import MoonError

    source = Path(path)
    if path == "-":
        rows, base = _json_lines(sys.stdin, "stdin"), Path.cwd()
    elif not source.is_file():
        raise MoonError(f"--queries {path}: no such file")
    elif source.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            rows = pq.read_table(source).to_pylist()
        except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for a damaged file
            raise MoonError(f"--queries {path}: not a readable Parquet file "
                            f"({str(exc).splitlines()[0][:160]})") from None
        base = source.parent
    else:
        with open(source, encoding="utf-8", errors="replace") as fh:
            rows, base = _json_lines(fh, path), source.parent
    queries = []
    for n, row in enumerate(rows):
        text = row.get("text", row.get("query_text"))
        image = row.get("image", row.get("query_image"))
        if image is not None and not Path(image).is_absolute():
            image = str(base / image)
        qid = row.get("id", row.get("query_id", row.get("pair_id", n)))
        queries.append({"id": str(qid), "text": text, "image": image})
    if not queries:
        raise MoonError(f"--queries {path}: no queries in it")
    return queries


def _json_lines(lines, source: str) -> list[dict]:
    from moon_cli.errors import MoonError

    rows = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MoonError(f"--queries {source}: line {n} is not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise MoonError(f"--queries {source}: line {n} is not a JSON object")
        rows.append(row)
    return rows
