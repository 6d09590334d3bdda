from collections import defaultdict

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from moon_cli.contracts import CATALOG, NEGATIVES, PAIRS
from moon_cli.io import read_table

from conftest import run_moon


@pytest.fixture
def mined(world, tmp_path):
    out = tmp_path / "pairs.parquet"
    assert run_moon("mine-pairs", world / "behavior.parquet", "-o", out, "--events",
                    "purchase,cart,click").exit_code == 0
    return out


def load(world, pairs, negatives):
    cat = {r["item_id"]: r for r in read_table(world / "catalog.parquet", CATALOG).table.to_pylist()}
    prs = {r["pair_id"]: r for r in read_table(pairs, PAIRS).table.to_pylist()}
    positives = defaultdict(set)
    for r in prs.values():
        positives[(r["query_text"], r["query_image"])].add(r["item_id"])
    negs = read_table(negatives, NEGATIVES).table.to_pylist()
    return cat, prs, positives, negs


def test_same_category_negatives_share_the_leaf_and_are_never_positives(world, mined, tmp_path):
    out = tmp_path / "neg.parquet"
    r = run_moon("sample-negatives", mined, "--catalog", world / "catalog.parquet", "-o", out, "--per-pair", 4)
    assert r.exit_code == 0, r.output
    cat, prs, positives, negs = load(world, mined, out)
    assert len(negs) == len(prs)
    kinds = defaultdict(int)
    for row in negs:
        pair = prs[row["pair_id"]]
        query_pos = positives[(pair["query_text"], pair["query_image"])]
        ids = [n["item_id"] for n in row["negatives"]]
        assert len(ids) == 4 and len(set(ids)) == 4
        for n in row["negatives"]:
            kinds[n["kind"]] += 1
            assert n["item_id"] not in query_pos
            pos_path, neg_path = cat[pair["item_id"]]["category_path"], cat[n["item_id"]]["category_path"]
            if n["kind"] == "same_leaf":
                assert neg_path == pos_path
            elif n["kind"] == "same_parent":
                assert neg_path[:-1] == pos_path[:-1]
    assert kinds["same_leaf"] > kinds["same_parent"]


def test_deterministic_for_a_seed(world, mined, tmp_path):
    outs = []
    for name, seed in (("a", 1), ("b", 1), ("c", 2)):
        assert run_moon("sample-negatives", mined, "--catalog", world / "catalog.parquet", "-o", tmp_path / name,
                        "--seed", seed, "--strategy", "random").exit_code == 0
        outs.append(pq.read_table(tmp_path / name).to_pylist())
    assert outs[0] == outs[1] and outs[0] != outs[2]


def test_embedding_negatives_are_nearest_and_the_margin_drops_near_duplicates(world, mined, tmp_path):
    cat_ids = read_table(world / "catalog.parquet", CATALOG).table.column("item_id").to_pylist()
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(len(cat_ids), 16)).astype(np.float32)
    prs = read_table(mined, PAIRS).table.to_pylist()
    target = prs[0]["item_id"]
    twin = next(i for i in cat_ids if i != target and all(p["item_id"] != i for p in prs))
    vecs[cat_ids.index(twin)] = vecs[cat_ids.index(target)] + 1e-3  # a near-duplicate of a positive
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    emb = pa.table({"id": cat_ids, "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), 16)})
    pq.write_table(emb, tmp_path / "emb.parquet")
    out = tmp_path / "neg.parquet"
    r = run_moon("sample-negatives", mined, "--catalog", world / "catalog.parquet", "-o", out, "--strategy",
                 "embedding", "--embeddings", tmp_path / "emb.parquet", "--per-pair", 5, "--margin", 0.05)
    assert r.exit_code == 0, r.output
    assert "positive" in r.output and "negative" in r.output  # the score table
    cat, prs_by_id, positives, negs = load(world, mined, out)
    first = next(row for row in negs if row["pair_id"] == prs[0]["pair_id"])
    assert twin not in [n["item_id"] for n in first["negatives"]]
    for row in negs:
        scores = [n["score"] for n in row["negatives"]]
        assert scores == sorted(scores, reverse=True) and all(n["kind"] == "embedding" for n in row["negatives"])
        pair = prs_by_id[row["pair_id"]]
        assert not {n["item_id"] for n in row["negatives"]} & positives[(pair["query_text"], pair["query_image"])]
    # the first negative really is the nearest allowed one
    anchor = vecs[cat_ids.index(target)]
    allowed = [(float(vecs[i] @ anchor), cid) for i, cid in enumerate(cat_ids)
               if cid not in positives[(prs[0]["query_text"],
                                        prs[0]["query_image"])] and float(vecs[i] @ anchor) <= 1 - 0.05]
    assert first["negatives"][0]["item_id"] == max(allowed)[1]


def test_embedding_strategy_without_embeddings_is_refused(world, mined, tmp_path):
    r = run_moon("sample-negatives", mined, "--catalog", world / "catalog.parquet", "-o", tmp_path / "n.parquet",
                 "--strategy", "embedding")
    assert r.exit_code == 1 and "--embeddings" in r.output
    assert not (tmp_path / "n.parquet").exists()


def _matches_stated(query_text, has_image, pos_attrs, neg_attrs):
    """Independent restatement: every attribute value the query's words name (and a photo's colour and pattern)."""
    words = (query_text or "").lower().split()
    stated = {n: v for n, v in pos_attrs.items() if v.lower() in words}
    if has_image:
        stated.update({n: pos_attrs[n] for n in ("color", "pattern") if n in pos_attrs})
    return all(neg_attrs.get(n) == v for n, v in stated.items())


def test_query_aware_negatives_never_match_every_attribute_the_query_states(world, mined, tmp_path):
    attrs = lambda row: {a["name"]: a["value"] for a in row["attributes"] or []}  # noqa: E731
    found = {}
    for flag in ("--query-aware", "--no-query-aware"):
        out = tmp_path / f"{flag}.parquet"
        r = run_moon("sample-negatives", mined, "--catalog", world / "catalog.parquet", "-o", out, "--per-pair", 4,
                     flag)
        assert r.exit_code == 0, r.output
        cat, prs, _, negs = load(world, mined, out)
        false = 0
        for row in negs:
            pair = prs[row["pair_id"]]
            for n in row["negatives"]:
                if n["kind"] == "same_leaf" and _matches_stated(pair["query_text"], pair["query_image"] is not None,
                                                                 attrs(cat[pair["item_id"]]), attrs(cat[n["item_id"]])):
                    false += 1
        found[flag] = (false, r.output)
    assert found["--no-query-aware"][0] > 0, "the world must hold look-alikes for this test to mean anything"
    assert found["--query-aware"][0] == 0
    assert "same-leaf candidates excluded" in found["--query-aware"][1]
    assert "not filtered" in found["--no-query-aware"][1]


def test_nan_inf_and_null_vectors_never_score_and_are_counted(world, mined, tmp_path):
    cat_ids = read_table(world / "catalog.parquet", CATALOG).table.column("item_id").to_pylist()
    vecs = np.random.default_rng(0).normal(size=(len(cat_ids), 8)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    vecs[3] = np.nan
    vecs[5, 0] = np.inf
    rows = [None if i == 7 else v.tolist() for i, v in enumerate(vecs)]
    status = ["error" if i == 7 else "ok" for i in range(len(cat_ids))]
    pq.write_table(pa.table({"id": cat_ids, "vector": pa.array(rows, pa.list_(pa.float32())), "status": status}),
                   tmp_path / "emb.parquet")
    out = tmp_path / "neg.parquet"
    r = run_moon("sample-negatives", mined, "--catalog", world / "catalog.parquet", "-o", out, "--strategy",
                 "embedding", "--embeddings", tmp_path / "emb.parquet", "--per-pair", 4)
    assert r.exit_code == 0 and "Traceback" not in r.output, r.output
    assert "2 NaN / Inf vector" in r.output
    bad = {cat_ids[3], cat_ids[5], cat_ids[7]}
    for row in read_table(out, NEGATIVES).table.to_pylist():
        for n in row["negatives"]:
            assert np.isfinite(n["score"]) and n["item_id"] not in bad
