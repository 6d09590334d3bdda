"""Tables moon did not write: polars (large_string / large_list), duckdb, pyarrow's large and view types,
pandas-style dictionaries. Every contract reads them as its plain types, on disk and through a pipe."""

import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from moon_cli.contracts import CONTRACTS, standard_type
from moon_cli.io import read_table

from conftest import moon_subprocess, run_moon

# one small table per table contract of a world (bench tables included), as moon itself wrote them
WORLD_TABLES = {"catalog": "catalog.parquet", "behavior": "behavior.parquet", "boxes": "boxes.parquet",
                "queries": "bench/text_queries.parquet", "product_queries": "bench/product_queries.parquet",
                "labeled_products": "bench/classification.parquet", "pairs": None}


def _large(t: pa.DataType) -> pa.DataType:
    """The large / view twin of a plain type (what other writers produce), recursively."""
    if pa.types.is_string(t):
        return pa.large_string()
    if pa.types.is_list(t):
        return pa.large_list(_large(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([t.field(i).with_type(_large(t.field(i).type)) for i in range(t.num_fields)])
    return t


def _views(t: pa.DataType) -> pa.DataType:
    if pa.types.is_string(t):
        return pa.string_view()
    if pa.types.is_list(t):
        return pa.list_view(_views(t.value_type))
    if pa.types.is_struct(t):
        return pa.struct([t.field(i).with_type(_views(t.field(i).type)) for i in range(t.num_fields)])
    return t


def _as(table: pa.Table, twin) -> pa.Table:
    columns = []
    for f, col in zip(table.schema, table.columns):
        target = twin(f.type)
        columns.append(pa.array(col.to_pylist(), target) if pa.types.is_list_view(target) or pa.types.is_struct(target)
                       else col.cast(target))
    return pa.table(columns, names=table.column_names)


def _write_polars(table: pa.Table, path):
    import polars as pl

    pl.from_arrow(table).write_parquet(path)


def _write_duckdb(table: pa.Table, path):
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    con.register("t", table)
    con.execute(f"COPY (SELECT * FROM t) TO '{path}' (FORMAT parquet)")
    con.close()


def _write_large(table: pa.Table, path):
    pq.write_table(_as(table, _large), path, store_schema=True)


def _write_dictionary(table: pa.Table, path):
    """pandas categoricals: dictionary-typed string columns in the stored Arrow schema."""
    encoded = [c.dictionary_encode() if pa.types.is_string(c.type) else c for c in table.columns]
    pq.write_table(pa.table(encoded, names=table.column_names), path, store_schema=True)


WRITERS = {"polars": _write_polars, "duckdb": _write_duckdb, "pyarrow-large": _write_large,
           "pyarrow-dictionary": _write_dictionary}


@pytest.mark.parametrize("writer", sorted(WRITERS))
@pytest.mark.parametrize("contract", sorted(WORLD_TABLES))
def test_every_contract_reads_tables_of_other_writers(world_template, request, tmp_path, writer, contract):
    source = request.getfixturevalue("mined_pairs") if contract == "pairs" else world_template / WORLD_TABLES[contract]
    ours = read_table(source, CONTRACTS[contract])  # paths made absolute
    out = tmp_path / "theirs.parquet"
    WRITERS[writer](ours.table.replace_schema_metadata(None), out)
    if writer != "duckdb":  # duckdb writes plain strings; the others must really hold the foreign types
        assert any(not standard_type(f.type).equals(f.type) for f in pq.read_schema(out))
    theirs = read_table(out, CONTRACTS[contract])
    assert [(f.name, f.type) for f in theirs.table.schema] == [(f.name, f.type) for f in ours.table.schema]
    assert theirs.table.to_pylist() == ours.table.to_pylist()


def test_an_arrow_stream_of_view_types_reads_on_stdin(world_template):
    raw = read_table(world_template / "catalog.parquet").table
    views = _as(raw, _views)
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, views.schema) as w:
        w.write_table(views)
    code = ("import sys; from moon_cli.io import read_table; from moon_cli.contracts import CATALOG; "
            "t = read_table('-', CATALOG).table; print(t.schema.field('image_paths').type, t.num_rows)")
    r = subprocess.run([sys.executable, "-c", code], input=sink.getvalue().to_pybytes(), capture_output=True)
    assert r.returncode == 0, r.stderr.decode()
    assert r.stdout.decode().split() == ["list<item:", "string>", str(raw.num_rows)]


def test_embed_detect_and_mine_pairs_run_on_polars_written_tables(world, detector, tmp_path):
    import polars as pl

    for name in ("catalog.parquet", "behavior.parquet", "bench/text_queries.parquet"):
        pl.read_parquet(world / name).write_parquet(world / name)  # the user's tables, rewritten by polars
    assert pq.read_schema(world / "catalog.parquet").field("title").type == pa.large_string()
    for args in (("embed", world / "catalog.parquet", "-m", "tiny", "-o", tmp_path / "e.parquet"),
                 ("embed", world / "bench/text_queries.parquet", "-m", "tiny", "-o", tmp_path / "q.parquet"),
                 ("detect", world / "catalog.parquet", "--detector", detector, "-o", tmp_path / "d.parquet"),
                 ("mine-pairs", world / "behavior.parquet", "--catalog", world / "catalog.parquet",
                  "-o", tmp_path / "p.parquet")):
        r = run_moon(*args, "--quiet" if args[0] != "mine-pairs" else "-q")
        assert r.exit_code == 0, (args[0], r.output)
    r = moon_subprocess(f"moon index {tmp_path / 'e.parquet'} -o {tmp_path / 'idx'}")
    assert r.returncode == 0, r.stderr.decode()
