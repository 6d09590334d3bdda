"""`moon inspect`: what an artifact holds — rows, columns, manifest — and whether it meets a contract."""

import json

import click


@click.command()
@click.argument("path")
@click.option("--contract", "contract_name", default=None,
              help="Validate against this contract (catalog, behavior, boxes, detections, queries, ...).")
@click.option("--head", type=click.IntRange(min=0), default=0, show_default=True, help="Also print the first N rows.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object instead of text.")
def inspect(path: str, contract_name, head: int, as_json: bool):
    """Describe the artifact at PATH: a Parquet file (or - for an Arrow stream on stdin): rows, columns, manifest,
    per-status counts; or a directory artifact: an index (rows, model, index type, search settings, recall), a
    checkpoint (backbone, parameters, step, metrics), an evaluation or CTR report (headline metrics), a detector or a
    world.

    \b
    Example (each runs in tests/test_docs.py):
      moon inspect pairs.parquet --contract pairs --head 3
      moon inspect index
    """
    from pathlib import Path

    from moon_cli.contracts import CONTRACTS
    from moon_cli.errors import MoonError
    from moon_cli.io import read_table

    if path != "-" and Path(path).is_dir():
        from moon_cli.artifacts import describe_dir, format_dir

        if contract_name or head:
            raise MoonError(f"{path}: --contract and --head apply to tables; this is a directory artifact")
        info = describe_dir(Path(path))
        click.echo(json.dumps(info, default=str) if as_json else format_dir(info))
        return
    contract = None
    if contract_name is not None:
        if contract_name not in CONTRACTS:
            raise MoonError(f"unknown contract '{contract_name}'; known: {', '.join(sorted(CONTRACTS))}")
        contract = CONTRACTS[contract_name]
    art = read_table(path, contract)
    info = {
        "source": art.source,
        "rows": art.table.num_rows,
        "columns": {f.name: str(f.type) for f in art.table.schema},
        "manifest": art.manifest,
    }
    if "status" in art.table.column_names:  # per-row outcomes: a file whose rows all failed says so
        statuses = art.table.column("status").to_pylist()
        info["status"] = {k: statuses.count(k) for k in sorted(set(statuses), key=str)}
    if contract is not None:
        info["contract"] = contract.name
    if head:
        info["head"] = art.table.slice(0, head).to_pylist()
    if as_json:
        click.echo(json.dumps(info, default=str))
        return
    counts = ", ".join(f"{k} {v}" for k, v in info.get("status", {}).items())
    click.echo(f"{info['source']}: {info['rows']} rows" + (f" ({counts})" if counts else "")
               + (f", meets the {contract.name} contract" if contract else ""))
    for name, typ in info["columns"].items():
        click.echo(f"  {name}: {typ}")
    if art.manifest:
        click.echo("manifest: " + json.dumps(art.manifest, sort_keys=True))
    for row in info.get("head", []):
        click.echo(json.dumps(row, default=str))
