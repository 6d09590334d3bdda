"""`moon index` reads its inputs in record batches (moon_cli/index/stream.py): shards and globs go straight into one
index, the filters and the recall check work batch by batch, and a bad row mid-way leaves nothing half-written."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet  # noqa: F401 - pa.parquet
import pytest

from conftest import moon_subprocess, run_moon
from moon_cli.errors import MoonError
from moon_cli.index.lance import build_index, open_table
from moon_cli.index.recall import exact_top, streamed_top
from moon_cli.index.stream import EmbeddingStream
from moon_cli.io import make_manifest, write_table


def shard(path, ids, vectors, model_id="m", dim=None, status=None):
    dim = dim or len(next(v for v in vectors if v is not None))
    n = len(ids)
    columns = {"id": ids, "vector": pa.array([None if v is None else list(v) for v in vectors],
                                             pa.list_(pa.float32())),
               "status": status or ["ok"] * n, "error": pa.nulls(n, pa.string())}
    write_table(pa.table(columns), path, manifest=make_manifest("embed", {"model": model_id, "model_id": model_id,
                                                                          "dim": dim}))


def unit(rng, n, dim):
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_the_streamed_top_k_is_the_exact_top_k_whatever_the_chunk_size():
    rng = np.random.default_rng(0)
    vectors, queries = unit(rng, 500, 16), unit(rng, 20, 16)
    ids = [f"r{i}" for i in range(500)]
    want = [[ids[j] for j in row] for row in exact_top(queries, vectors, 10)]
    for size in (7, 64, 500):
        def chunks(size=size):
            for s in range(0, 500, size):
                yield ids[s:s + size], vectors[s:s + size]
        assert streamed_top(queries, chunks, 10) == want
    skip = [ids[int(exact_top(q[None], vectors, 1)[0, 0])] for q in queries]  # leave each query's best out
    got = streamed_top(queries, lambda: iter([(ids, vectors)]), 10, skip=skip)
    assert all(s not in row and row == w[1:] + row[-1:] for s, row, w in zip(skip, got, want))


def test_shards_by_glob_in_small_batches_index_like_one_file_and_count_what_is_left_out(tmp_path):
    rng = np.random.default_rng(1)
    v = unit(rng, 300, 8)
    ids = [f"p{i}" for i in range(300)]
    for k in range(3):  # the last shard repeats ten ids of the first, and holds a NaN and a failed row
        part_ids, part_v, status = ids[k * 100:(k + 1) * 100], list(v[k * 100:(k + 1) * 100]), None
        if k == 2:
            part_ids, part_v = part_ids + ids[:10] + ["nan", "failed"], part_v + list(v[:10]) + [
                np.full(8, np.nan, np.float32), None]
            status = ["ok"] * 111 + ["error"]
        shard(tmp_path / f"emb-{k}-of-3.parquet", part_ids, part_v, status=status)
    source = EmbeddingStream.open([str(tmp_path / "emb-*-of-3.parquet")], batch_rows=16)
    report = build_index(source, tmp_path / "idx")
    assert report.rows == 300 and source.rows_in == 312 and len(source.readers) == 3
    assert source.dropped == {"duplicate id": 10, "NaN / Inf vector": 1} and source.first_bad == "nan"
    stored = open_table(tmp_path / "idx").to_arrow()
    assert sorted(stored.column("id").to_pylist()) == sorted(ids)
    assert report.recall_at_10 == 1.0 and report.sample == 200  # the reservoir's sample, checked by two passes


def test_a_bad_row_in_a_later_batch_leaves_the_index_as_it_was(tmp_path):
    rng = np.random.default_rng(2)
    shard(tmp_path / "a.parquet", [f"a{i}" for i in range(50)], unit(rng, 50, 4))
    assert run_moon("index", tmp_path / "a.parquet", "-o", tmp_path / "idx").exit_code == 0
    rows = list(unit(rng, 40, 4)) + [np.ones(3, np.float32)]
    shard(tmp_path / "b.parquet", [f"b{i}" for i in range(41)], np.array(rows, dtype=object), dim=4)
    before = (tmp_path / "idx" / "moon_index.json").read_text()
    shard(tmp_path / "a2.parquet", [f"c{i}" for i in range(20)], unit(rng, 20, 4))
    with pytest.raises(MoonError, match="b.parquet: row 40 \\(id b40\\) has a 3-wide vector"):  # the 8th batch of 8
        paths = [str(tmp_path / "a2.parquet"), str(tmp_path / "b.parquet")]  # rows counted per file
        build_index(EmbeddingStream.open(paths, batch_rows=8), tmp_path / "idx", append=True)
    assert open_table(tmp_path / "idx").count_rows() == 50
    r = run_moon("index", tmp_path / "b.parquet", "-o", tmp_path / "idx", "--overwrite")
    assert r.exit_code == 1 and "row 40 (id b40) has a 3-wide vector" in r.output, r.output
    assert "Traceback" not in r.output and open_table(tmp_path / "idx").count_rows() == 50
    assert (tmp_path / "idx" / "moon_index.json").read_text() == before


def test_shards_of_two_models_or_widths_are_refused_before_anything_is_written(tmp_path):
    rng = np.random.default_rng(3)
    shard(tmp_path / "a.parquet", ["x"], unit(rng, 1, 4))
    shard(tmp_path / "b.parquet", ["y"], unit(rng, 1, 8))
    r = run_moon("index", tmp_path / "a.parquet", tmp_path / "b.parquet", "-o", tmp_path / "idx")
    assert r.exit_code == 1 and "(dim 8) but" in r.output and "(dim 4)" in r.output
    assert not (tmp_path / "idx").exists()
    r = run_moon("index", str(tmp_path / "none-*.parquet"), "-o", tmp_path / "idx")
    assert r.exit_code == 1 and "no file matches this pattern" in r.output


def test_embeddings_piped_on_stdin_are_indexed(tmp_path):
    rng = np.random.default_rng(4)
    shard(tmp_path / "a.parquet", [f"a{i}" for i in range(30)], unit(rng, 30, 4))
    table = pa.parquet.read_table(tmp_path / "a.parquet")
    with pa.OSFile(str(tmp_path / "a.arrows"), "wb") as f, pa.ipc.new_stream(f, table.schema) as writer:
        writer.write_table(table)  # what `moon embed ... -o -` writes
    r = moon_subprocess(f"cat {tmp_path / 'a.arrows'} | moon index - -o {tmp_path / 'idx'}")
    assert r.returncode == 0, r.stderr.decode()[-800:]
    assert json.loads((tmp_path / "idx" / "moon_index.json").read_text())["rows"] == 30


def test_nothing_usable_is_one_line_and_no_index(tmp_path):
    shard(tmp_path / "a.parquet", ["a", "b"], np.array([None, None], dtype=object), dim=4, status=["error"] * 2)
    r = run_moon("index", tmp_path / "a.parquet", "-o", tmp_path / "idx")
    assert r.exit_code == 1 and "no ok rows to index" in r.output and not (tmp_path / "idx").exists()
    with pytest.raises(MoonError):
        build_index(EmbeddingStream.open([str(tmp_path / "a.parquet")]), tmp_path / "idx2")


def test_the_reservoir_is_a_uniform_sample_of_every_batch():
    from moon_cli.index.stream import Sample

    sample = Sample(200)
    rows = np.arange(10_000, dtype=np.float32)[:, None]  # (N, 1): a row's vector is its number
    for s in range(0, 10_000, 64):
        sample.offer([f"r{i}" for i in range(s, min(s + 64, 10_000))], rows[s:s + 64])
    picked = sample.matrix()[:, 0]
    assert sample.seen == 10_000 and len(set(sample.ids)) == 200
    assert [f"r{int(x)}" for x in picked] == sample.ids  # ids and vectors stay paired
    assert 4_300 < picked.mean() < 5_700 and (picked > 9_000).sum() > 5  # late rows are drawn too
