import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq
from PIL import Image

from moon_cli.contracts import BEHAVIOR, BOXES, CATALOG, EVENTS, LABELED_PRODUCTS, PRODUCT_QUERIES, QUERIES
from moon_cli.io import read_table
from moon_cli.synth.bench import TASKS

from conftest import run_moon


def digest(world: Path) -> dict[str, str]:
    """Hash of every table's contents and every image's bytes."""
    out = {}
    for p in sorted(world.rglob("*")):
        if p.suffix == ".parquet":
            out[str(p.relative_to(world))] = hashlib.sha256(str(pq.read_table(p).to_pylist()).encode()).hexdigest()
        elif p.suffix == ".jpg":
            out[str(p.relative_to(world))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def test_same_seed_gives_identical_tables_and_images(tmp_path):
    for name in ("a", "b"):
        assert run_moon("synth", tmp_path / name, "--products", 40, "--seed", 7, "-q").exit_code == 0
    a, b = digest(tmp_path / "a"), digest(tmp_path / "b")
    assert len(a) > 100 and a == b
    assert run_moon("synth", tmp_path / "c", "--products", 40, "--seed", 8, "-q").exit_code == 0
    assert digest(tmp_path / "c") != a


def test_tables_meet_their_contracts_and_paths_exist(world_template):
    cat = read_table(world_template / "catalog.parquet", CATALOG).table
    for paths in cat.column("image_paths").to_pylist():
        assert paths and all(Path(p).is_file() for p in paths)
    beh = read_table(world_template / "behavior.parquet", BEHAVIOR).table
    assert set(beh.column("event").to_pylist()) == set(EVENTS)
    for p in set(beh.column("query_image").drop_null().to_pylist()):
        assert Path(p).is_file()
    boxes = read_table(world_template / "boxes.parquet", BOXES).table
    assert boxes.num_rows >= sum(len(p) for p in cat.column("image_paths").to_pylist())
    contracts = {"queries": QUERIES, "product_queries": PRODUCT_QUERIES, "labeled_products": LABELED_PRODUCTS}
    for task, (filename, contract) in TASKS.items():
        t = read_table(world_template / "bench" / filename, contracts[contract.name]).table
        assert t.num_rows > 0, task
    labels = json.loads((world_template / "bench" / "labels.json").read_text())
    assert len(labels["category_levels"]) == 3 and set(labels["attributes"]) >= {"color", "pattern", "material",
                                                                                 "brand"}


def test_world_has_the_phenomena_moon_needs(tmp_path):
    assert run_moon("synth", tmp_path / "w", "--products", 300, "--seed", 0, "-q").exit_code == 0
    cat = pq.read_table(tmp_path / "w" / "catalog.parquet").to_pylist()
    paths = [tuple(r["category_path"]) for r in cat]
    assert all(len(p) == 3 for p in paths) and len(set(paths)) >= 30
    attrs = [{a["name"]: a["value"] for a in r["attributes"]} for r in cat]
    assert set(attrs[0]) >= {"color", "pattern", "material", "brand"}
    # same-leaf products that differ in exactly one attribute (hard negatives)
    one_diff = 0
    for i in range(len(cat)):
        for j in range(i + 1, len(cat)):
            if paths[i] == paths[j] and sum(attrs[i][k] != attrs[j][k] for k in attrs[i]) == 1:
                one_diff += 1
    assert one_diff >= 20
    # many-to-one: several photos per product, titles with noise (not a template)
    assert Counter(len(r["image_paths"]) for r in cat).most_common()[0][0] > 1 or \
        sum(len(r["image_paths"]) > 1 for r in cat) > len(cat) / 2
    assert len({r["title"].split()[0].lower() for r in cat}) > 20
    # behaviour: every query modality, purchases without a query, several weeks
    beh = pq.read_table(tmp_path / "w" / "behavior.parquet").to_pylist()
    sessions = {}
    for r in beh:
        sessions[r["session_id"]] = (r["query_text"] is not None, r["query_image"] is not None)
    kinds = Counter(sessions.values())
    assert all(kinds[k] > 0 for k in [(True, False), (False, True), (True, True), (False, False)])
    assert any(r["event"] == "purchase" and r["query_text"] is None and r["query_image"] is None for r in beh)
    ts = [r["ts"] for r in beh]
    assert (max(ts) - min(ts)).days >= 21


def test_boxes_hold_the_product(world_template):
    """Each catalogue photo's box lies in the image and contains the product's colour; outside it, less so."""
    import numpy as np

    from moon_cli.synth.taxonomy import COLORS

    colors = {r["item_id"]: {a["name"]: a["value"] for a in r["attributes"]}["color"]
              for r in pq.read_table(world_template / "catalog.parquet").to_pylist()}
    boxes = [r for r in read_table(world_template / "boxes.parquet",
                                   BOXES).table.to_pylist() if r["source"] == "catalog"]
    inside_share = []
    for row in boxes[:60]:
        x0, y0, x1, y1 = (int(round(v)) for v in row["bbox"])
        img = np.asarray(Image.open(row["image_path"]).convert("RGB"), dtype=np.int32)
        assert 0 <= x0 < x1 <= img.shape[1] and 0 <= y0 < y1 <= img.shape[0]
        close = np.abs(img - np.array(COLORS[colors[row["item_id"]]][0])).sum(-1) < 60
        mask = np.zeros(close.shape, bool)
        mask[y0:y1, x0:x1] = True
        if close.sum() > 20:
            inside_share.append(close[mask].sum() / close.sum())
    assert len(inside_share) > 30
    assert np.median(inside_share) > 0.9


def test_non_empty_out_dir_is_refused_and_left_untouched(world):
    before = digest(world)
    result = run_moon("synth", world, "--products", 10)
    assert result.exit_code == 1 and "--overwrite" in result.output
    assert digest(world) == before
    assert run_moon("synth", world, "--products", 10, "--overwrite", "-q").exit_code == 0
    assert pq.read_table(world / "catalog.parquet").num_rows == 10


def test_bad_product_counts_are_usage_errors(tmp_path):
    for n in ("0", "-5", "many"):
        result = run_moon("synth", tmp_path / "w", "--products", n)
        assert result.exit_code == 2, result.output
    assert not (tmp_path / "w").exists()


def test_world_can_be_moved(world, tmp_path):
    moved = tmp_path / "elsewhere" / "w2"
    shutil.move(str(world), moved)
    cat = read_table(moved / "catalog.parquet", CATALOG).table
    first = cat.column("image_paths").to_pylist()[0][0]
    assert first.startswith(str(moved)) and Path(first).is_file()


def test_relative_out_dir_stores_paths_relative_to_the_world(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_moon("synth", "runs/w", "--products", 5, "-q").exit_code == 0
    raw = pq.read_table(tmp_path / "runs" / "w" / "catalog.parquet").column("image_paths").to_pylist()
    assert all(p.startswith("images/") for paths in raw for p in paths), raw[0]
