import json
import random
from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa
import pytest
import torch

from conftest import run_moon
from moon_cli.contracts import BEHAVIOR, CATALOG, EMBEDDINGS
from moon_cli.ctr.data import build_ctr_data
from moon_cli.ctr.metrics import auc, gauc
from moon_cli.ctr.model import SimTier
from moon_cli.ctr.run import CTRConfig, content_table, fit_and_score
from moon_cli.io import read_table, write_table


def brute_force_auc(labels, scores):
    pos = [s for y, s in zip(labels, scores) if y]
    neg = [s for y, s in zip(labels, scores) if not y]
    return sum(1.0 if p > n else 0.5 if p == n else 0.0 for p in pos for n in neg) / (len(pos) * len(neg))


def test_auc_matches_the_pairwise_definition_with_ties():
    rng = np.random.default_rng(0)
    labels = rng.random(300) < 0.3
    scores = np.round(rng.random(300), 1)  # many ties
    assert auc(labels, scores) == pytest.approx(brute_force_auc(labels, scores))
    assert auc(np.ones(5), np.arange(5)) is None


def test_gauc_weights_users_by_impressions_and_skips_one_class_users():
    groups = np.array(["a"] * 4 + ["b"] * 2 + ["c"] * 3)
    labels = np.array([1, 0, 1, 0, 1, 0, 1, 1, 1])
    scores = np.array([0.9, 0.1, 0.2, 0.8, 0.3, 0.6, 0.5, 0.5, 0.5])
    a, b = auc(labels[:4], scores[:4]), auc(labels[4:6], scores[4:6])
    assert gauc(groups, labels, scores) == pytest.approx((4 * a + 2 * b) / 6)  # c has no negatives


def test_simtier_counts_shares_of_the_real_sequence():
    sims = torch.tensor([[0.95, -0.95, 0.05, 0.99]])
    mask = torch.tensor([[True, True, True, False]])
    hist = SimTier(4)(sims, mask)  # tiers [-1,-.5) [-.5,0) [0,.5) [.5,1]
    torch.testing.assert_close(hist[0, :4], torch.tensor([1 / 3, 0.0, 1 / 3, 1 / 3]))
    assert hist[0, 4].item() == pytest.approx(np.log1p(3))


def test_histories_hold_only_the_users_earlier_clicks(world_template):
    behavior = read_table(world_template / "behavior.parquet", BEHAVIOR).table
    catalog = read_table(world_template / "catalog.parquet", CATALOG).table
    data = build_ctr_data(behavior, catalog, max_len=6, test_fraction=0.25)
    rows = behavior.to_pylist()
    clicks_of: dict[str, list] = {}
    start_of: dict[str, datetime] = {}
    for r in rows:
        start_of[r["session_id"]] = min(start_of.get(r["session_id"], r["ts"]), r["ts"])
        if r["event"] == "click":
            clicks_of.setdefault(r["user_id"], []).append((r["ts"], r["item_id"]))
    impressions = sorted((r for r in rows if r["event"] == "impression"),
                         key=lambda r: (r["ts"], r["session_id"], r["item_id"]))
    assert len(impressions) == len(data.label)
    for i in range(0, len(impressions), 37):
        r = impressions[i]
        expected = [it for ts, it in sorted(clicks_of.get(r["user_id"], [])) if ts < start_of[r["session_id"]]][-6:]
        got = [data.item_ids[k - 1] for k in data.history[i] if k > 0]
        assert got == expected
        assert (data.history[i][: 6 - len(got)] == 0).all()  # right-aligned: padding first
    test_starts = [start_of[r["session_id"]] for r, t in zip(impressions, data.is_test) if t]
    train_starts = [start_of[r["session_id"]] for r, t in zip(impressions, data.is_test) if not t]
    assert max(train_starts) < min(test_starts)
    assert 0.15 < data.is_test.mean() < 0.35


def _taste_world(tmp_path, n_users=40, n_items=200, colours=5, seed=0):
    """Users click products in their favourite colour; the test period shows only new products (cold start),
    so an item's ID says nothing there and only the content (a one-hot colour vector) can carry the taste."""
    rng = random.Random(seed)
    colour = [i % colours for i in range(n_items)]
    fav = [rng.randrange(colours) for _ in range(n_users)]
    rows = {k: [] for k in ("user_id", "session_id", "ts", "query_text", "query_image", "item_id", "event")}
    start = datetime(2024, 1, 1)
    for s in range(n_users * 16):
        u = s % n_users
        ts = start + timedelta(hours=s)
        pool = range(0, 140) if s < n_users * 12 else range(140, n_items)
        for item in rng.sample(list(pool), 8):
            for event in ["impression"] + (["click"] * (rng.random() < (0.6 if colour[item] == fav[u] else 0.05))):
                for k, v in zip(rows, (f"u{u}", f"s{s}", ts, None, None, f"p{item}", event)):
                    rows[k].append(v)
    write_table(pa.table(rows, schema=BEHAVIOR.schema), tmp_path / "behavior.parquet", contract=BEHAVIOR)
    write_table(pa.table({"item_id": [f"p{i}" for i in range(n_items)], "title": [f"p{i}" for i in range(n_items)],
                          "category_path": [["Root", "Leaf"]] * n_items, "attributes": [[]] * n_items,
                          "image_paths": [[]] * n_items}, schema=CATALOG.schema), tmp_path / "catalog.parquet",
                contract=CATALOG)
    vectors = np.eye(colours, dtype=np.float32)[colour]
    write_table(pa.table({"id": [f"p{i}" for i in range(n_items)],
                          "vector": pa.array(list(vectors), pa.list_(pa.float32(), colours))}),
                tmp_path / "emb.parquet", contract=EMBEDDINGS)
    return tmp_path


def test_frozen_embeddings_carry_taste_to_new_items_that_ids_cannot(tmp_path):
    w = _taste_world(tmp_path)
    data = build_ctr_data(read_table(w / "behavior.parquet", BEHAVIOR).table,
                          read_table(w / "catalog.parquet", CATALOG).table, max_len=8, test_fraction=0.25)
    emb = read_table(w / "emb.parquet", EMBEDDINGS).table
    content, missing = content_table(data, emb.column("id").to_pylist(),
                                     np.stack(emb.column("vector").to_numpy(zero_copy_only=False)))
    assert missing == 0
    cfg = CTRConfig(epochs=6)
    with_content = fit_and_score(data, content, 8, 0, cfg)
    ids_only = fit_and_score(data, None, 8, 0, cfg)
    assert with_content["auc"] > 0.75 > ids_only["auc"] + 0.1


def test_moon_ctr_reports_every_variant_length_and_seed(tmp_path):
    w = _taste_world(tmp_path)
    r = run_moon("ctr", w / "behavior.parquet", "--catalog", w / "catalog.parquet", "-e", f"colour={w / 'emb.parquet'}",
                 "-o", tmp_path / "ctr", "--seq-lens", "1,4", "--seeds", "0,1", "--epochs", "1", "-q")
    assert r.exit_code == 0, r.output
    report = json.loads((tmp_path / "ctr" / "ctr.json").read_text())
    assert {(x["variant"], x["seq_len"], x["seed"]) for x in report["runs"]} == {
        (v, L, s) for v in ("ids only", "colour") for L in (1, 4) for s in (0, 1)}
    assert {x["variant"] for x in report["summary"]} == {"ids only", "colour"}
    assert "| colour | 4 |" in r.stdout
    again = run_moon("ctr", w / "behavior.parquet", "--catalog", w / "catalog.parquet", "-o", tmp_path / "ctr")
    assert again.exit_code != 0 and "--overwrite" in again.output


def test_moon_ctr_bad_inputs_say_what_is_wrong(tmp_path, world_template):
    w = _taste_world(tmp_path)
    strangers = tmp_path / "strangers.parquet"
    write_table(pa.table({"id": ["x", "y"], "vector": pa.array([[1.0, 0.0], [0.0, 1.0]], pa.list_(pa.float32(), 2))}),
                strangers, contract=EMBEDDINGS)
    r = run_moon("ctr", w / "behavior.parquet", "--catalog", w / "catalog.parquet", "-e", strangers, "-o",
                 tmp_path / "o")
    assert r.exit_code == 1 and "none of its ids is a catalogue item_id" in r.output
    no_imp = tmp_path / "clicks_only.parquet"
    b = read_table(w / "behavior.parquet", BEHAVIOR).table
    write_table(b.filter(pa.compute.equal(b.column("event"), "click")), no_imp, contract=BEHAVIOR)
    r = run_moon("ctr", no_imp, "--catalog", w / "catalog.parquet", "-o", tmp_path / "o")
    assert r.exit_code == 1 and "no 'impression' events" in r.output
    r = run_moon("ctr", w / "catalog.parquet", "--catalog", w / "catalog.parquet", "-o", tmp_path / "o")
    assert r.exit_code == 1 and "user_id" in r.output
    assert not (tmp_path / "o").exists()
