"""Index settings chosen by measurement, and the two search paths (LanceDB, in-memory FAISS) agreeing."""

import json
import sys

import numpy as np
import pyarrow as pa
import pytest

from moon_cli.errors import MoonError
from moon_cli.index import memory as memory_module
from moon_cli.index.searcher import Searcher
from moon_cli.io import make_manifest, write_table

from conftest import moon_subprocess, run_moon


def clustered_embeddings(path, n=3000, dim=32, clusters=40, seed=0):
    """Unit vectors around a few centres (like real embeddings: ANN recall depends on the settings)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim))
    v = centres[rng.integers(0, clusters, n)] + 1.0 * rng.standard_normal((n, dim))
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    table = pa.table({"id": [f"i{i}" for i in range(n)],
                      "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.reshape(-1)), dim),
                      "status": ["ok"] * n, "error": pa.nulls(n, pa.string()),
                      "colour": [["red", "blue", "green"][i % 3] for i in range(n)]})
    write_table(table, path, manifest=make_manifest("embed", {"model": "m", "model_id": "m", "dim": dim}))
    return v


def exact_top(vectors, queries, k, allowed=None):
    scores = queries @ vectors.T  # (Q, N)
    if allowed is not None:
        scores[:, ~allowed] = -np.inf
    return np.argsort(-scores, axis=1, kind="stable")[:, :k]


def recall(found_ids, truth_rows, k=10):
    return np.mean([len({int(x[1:]) for x in got} & set(t[:k].tolist())) / k for got, t in zip(found_ids, truth_rows)])


@pytest.fixture(scope="module")
def ivf_index(tmp_path_factory):
    d = tmp_path_factory.mktemp("ivf")
    v = clustered_embeddings(d / "e.parquet")
    r = run_moon("index", d / "e.parquet", "-o", d / "idx", "--index-type", "ivf_flat", "--recall-target", 0.95)
    assert r.exit_code == 0, r.output
    return d / "idx", v, r.output


def fresh_queries(v, n=60, seed=7):
    rng = np.random.default_rng(seed)
    q = v[rng.choice(len(v), n, replace=False)] + 0.1 * rng.standard_normal((n, v.shape[1])).astype(np.float32)
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def test_index_records_the_cheapest_setting_that_reaches_the_target(ivf_index):
    idx, v, out = ivf_index
    info = json.loads((idx / "moon_index.json").read_text())
    assert info["index_type"] == "ivf_flat" and info["recall_target"] == 0.95
    assert info["recall@10"] >= 0.95 and "nprobes" in info["search"]
    assert f"nprobes {info['search']['nprobes']}" in out and "target 0.95" in out
    # the stored setting keeps its promise on queries the build never saw
    q = fresh_queries(v)
    hits = Searcher(idx).search(q, 10, columns=[])
    assert recall([[h["id"] for h in row] for row in hits], exact_top(v, q, 10)) >= 0.93
    # the next cheaper setting misses the target (else it would have been chosen)
    from moon_cli.index.lance import CANDIDATES, SearchSettings, open_table, search_vectors
    from moon_cli.index.recall import first_reaching

    steps = [c["nprobes"] for c in CANDIDATES["ivf_flat"]]
    at = steps.index(info["search"]["nprobes"])
    if at > 0:
        table = open_table(idx)

        def rows(nprobes, queries, k):
            found = search_vectors(table, queries, k, SearchSettings("ivf_flat", nprobes), columns=["id"])
            return [[int(x[1:]) for x in t.column("id").to_pylist()] for t in found]

        _, cheaper_recall, _ = first_reaching([steps[at - 1]], rows, v, 0.0)
        assert cheaper_recall < 0.95


def test_memory_and_lancedb_paths_return_the_same_ids_for_exact_settings(tmp_path):
    v = clustered_embeddings(tmp_path / "e.parquet", n=800)
    assert run_moon("index", tmp_path / "e.parquet", "-o", tmp_path / "idx", "--index-type", "flat").exit_code == 0
    q = fresh_queries(v, 30)
    lance = Searcher(tmp_path / "idx", memory="off").search(q, 10)
    mem = Searcher(tmp_path / "idx", memory="on").search(q, 10)
    assert [[h["id"] for h in row] for row in lance] == [[h["id"] for h in row] for row in mem]
    assert np.allclose([[h["score"] for h in row] for row in lance], [[h["score"] for h in row] for row in mem],
                       atol=1e-5)
    assert mem[0][0]["colour"] in {"red", "blue", "green"}  # stored columns come with the hits on both paths
    truth = exact_top(v, q, 10)
    assert recall([[h["id"] for h in row] for row in mem], truth) == 1.0


def test_in_memory_ivf_meets_the_target_and_filters(ivf_index, monkeypatch):
    monkeypatch.setattr(memory_module, "FLAT_BELOW", 1000)  # exercise FAISS IVF on a small index
    idx, v, _ = ivf_index
    s = Searcher(idx, memory="on")
    assert s.memory.kind == "ivf_flat" and s.memory.recall >= 0.95 and "nprobe" in s.describe()
    q = fresh_queries(v)
    hits = s.search(q, 10, columns=[])
    assert recall([[h["id"] for h in row] for row in hits], exact_top(v, q, 10)) >= 0.93
    monkeypatch.setattr(memory_module, "EXACT_SUBSET_BELOW", 10)  # the FAISS id-selector path, not numpy
    red = np.array([i % 3 == 0 for i in range(len(v))])
    filtered = s.search(q, 10, where="colour = 'red'")
    assert all(h["colour"] == "red" for row in filtered for h in row) and all(len(row) == 10 for row in filtered)
    assert recall([[h["id"] for h in row] for row in filtered], exact_top(v, q, 10, red)) >= 0.9


@pytest.mark.parametrize("memory", ["off", "on"])
def test_where_filters_return_only_matching_rows_on_both_paths(catalog_index, memory):
    d, _ = catalog_index
    s = Searcher(d / "idx", memory=memory)
    q = np.random.default_rng(0).standard_normal((3, s.dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    leaf = s.facets()["categories"][0]
    rows = s.search(q, 5, where=f"array_has(category_path, '{leaf}')")
    assert all(len(row) > 0 for row in rows)
    assert all(h["category_path"][-1] == leaf for row in rows for h in row)
    colour = s.facets()["attributes"]["color"][0]
    rows = s.search(q, 5, where=f"array_has(attributes, named_struct('name', 'color', 'value', '{colour}'))")
    assert all({"name": "color", "value": colour} in h["attributes"] for row in rows for h in row)
    assert s.search(q, 5, where="array_has(category_path, 'no such leaf')") == [[], [], []]
    with pytest.raises(MoonError, match="where 'array_has\\(nope'"):
        s.search(q, 5, where="array_has(nope")


def test_an_index_built_before_measured_settings_still_opens_and_searches(ivf_index, tmp_path):
    import shutil

    idx, v, _ = ivf_index
    old = tmp_path / "old"
    shutil.copytree(idx, old)
    info = json.loads((old / "moon_index.json").read_text())
    for key in ("search", "recall_target", "recall@10"):
        info.pop(key)
    (old / "moon_index.json").write_text(json.dumps(info))
    for memory in ("off", "on"):
        s = Searcher(old, memory=memory)
        hits = s.search(v[:2], 3, columns=[])
        assert [row[0]["id"] for row in hits] == ["i0", "i1"]
    assert Searcher(old).settings.nprobes is None  # ivf_flat had no legacy settings: LanceDB's defaults


def test_memory_over_the_limit_is_an_error_or_a_fallback_said_once(ivf_index, capsys):
    idx, _, _ = ivf_index
    with pytest.raises(MoonError, match=r"3,000 × 32 vectors needs ~.* GiB, over the .* GiB limit"):
        Searcher(idx, memory="on", memory_limit=1000)
    s = Searcher(idx, memory="auto", memory_limit=1000)
    assert s.memory is None and "searching through LanceDB" in capsys.readouterr().err


def test_missing_faiss_names_the_extra(ivf_index, monkeypatch, capsys):
    idx, _, _ = ivf_index
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss → ImportError
    with pytest.raises(MoonError, match=r"pip install 'moon-cli\[faiss\]'"):
        Searcher(idx, memory="on")
    assert Searcher(idx, memory="auto").memory is None and "moon-cli[faiss]" in capsys.readouterr().err


def test_search_queries_file_gives_one_line_per_query(catalog_index, world_template, tmp_path):
    d, _ = catalog_index
    bench = world_template / "bench"
    r = moon_subprocess(f"moon search {d / 'idx'} -m tiny --queries {bench / 'multimodal_queries.parquet'} "
                        f"-k 3 --batch-size 16 --memory on")
    assert r.returncode == 0, r.stderr
    lines = [json.loads(x) for x in r.stdout.decode().splitlines()]
    import pyarrow.parquet as pq

    expected = pq.read_table(bench / "multimodal_queries.parquet").column("query_id").to_pylist()
    assert [x["id"] for x in lines] == expected and all(len(x["hits"]) == 3 for x in lines)
    # JSON lines from stdin: a bad query gets its own error line, the others their hits
    src = '{"text": "red mug"}\n{"id": "bad", "image": "missing.jpg"}\n'
    r = moon_subprocess(f"moon search {d / 'idx'} -m tiny --queries - -k 2 --where \"array_has(category_path, "
                        f"'no such leaf')\"", input=src.encode())
    lines = [json.loads(x) for x in r.stdout.decode().splitlines()]
    assert r.returncode == 0 and lines[0] == {"id": "0", "hits": []}
    assert lines[1]["id"] == "bad" and "missing.jpg" in lines[1]["error"]
    r = moon_subprocess(f"moon search {d / 'idx'} -m tiny --text x --where 'array_has(nope'")
    err = r.stderr.decode().strip()
    assert r.returncode != 0 and len(err.splitlines()) == 1 and "where 'array_has(nope'" in err
