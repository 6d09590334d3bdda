"""kill -9 trials (slow: `make kill-trials`): a stage killed at a random moment, then run again, ends exactly
where an uninterrupted run does — embed and train resume, index and detect leave the old output or the new
one (correctly labelled), never a mix, and no temporary litter."""

import json
import os
import random
import signal
import subprocess
import sys

import pyarrow.parquet as pq
import pytest

from conftest import run_moon

pytestmark = pytest.mark.slow
TRIALS = int(os.environ.get("MOON_KILL_TRIALS", "2"))


def moon_cmd(*args):
    return [sys.executable, "-m", "moon_cli.cli", *map(str, args)]


def kill_after(cmd, seconds: float) -> int:
    """Start ``cmd``, SIGKILL it after ``seconds`` (unless it finished); return its exit code."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return proc.returncode


def no_litter(directory):
    return [p.name for p in directory.iterdir() if p.name.endswith((".tmp", ".old", ".lock"))]


@pytest.fixture(scope="module")
def inputs(world_template, tmp_path_factory):
    d = tmp_path_factory.mktemp("kill")
    w = world_template
    assert run_moon("mine-pairs", w / "behavior.parquet", "--catalog", w / "catalog.parquet", "-o",
                    d / "pairs.parquet").exit_code == 0
    return {"world": w, "pairs": d / "pairs.parquet", "catalog": w / "catalog.parquet"}


@pytest.mark.parametrize("trial", range(TRIALS))
def test_embed_killed_then_resumed_equals_an_uninterrupted_run(inputs, tmp_path, trial):
    args = [inputs["catalog"], "-m", "tiny", "-q", "--batch-size", 8]
    assert subprocess.run(moon_cmd("embed", *args, "-o", tmp_path / "straight.parquet")).returncode == 0
    kill_after(moon_cmd("embed", *args, "-o", tmp_path / "e.parquet"), random.Random(trial).uniform(3, 12))
    assert subprocess.run(moon_cmd("embed", *args, "-o", tmp_path / "e.parquet", "--resume")).returncode == 0
    a = {r["id"]: r["vector"] for r in pq.read_table(tmp_path / "straight.parquet").to_pylist()}
    b = {r["id"]: r["vector"] for r in pq.read_table(tmp_path / "e.parquet").to_pylist()}
    assert a.keys() == b.keys() and pq.read_table(tmp_path / "e.parquet").num_rows == len(a)
    assert all(max(abs(x - y) for x, y in zip(a[k], b[k])) < 1e-5 for k in a)
    assert no_litter(tmp_path) == []


@pytest.mark.parametrize("trial", range(TRIALS))
def test_train_killed_then_resumed_equals_an_uninterrupted_run(inputs, tmp_path, trial):
    args = [inputs["pairs"], "--catalog", inputs["catalog"], "--steps", 6, "--batch-size", 4, "--val-every", 0,
            "--checkpoint-every", 1, "-q"]
    assert subprocess.run(moon_cmd("train", *args, "-o", tmp_path / "straight")).returncode == 0
    kill_after(moon_cmd("train", *args, "-o", tmp_path / "run"), random.Random(trial).uniform(8, 20))
    assert subprocess.run(moon_cmd("train", *args, "-o", tmp_path / "run", "--resume")).returncode == 0
    from safetensors.torch import load_file

    wa, wb = load_file(tmp_path / "straight" / "model.safetensors"), load_file(tmp_path / "run" / "model.safetensors")
    assert wa.keys() == wb.keys() and all((wa[k] - wb[k]).abs().max() < 1e-5 for k in wa)
    assert no_litter(tmp_path) == []


@pytest.mark.parametrize("trial", range(TRIALS))
def test_index_killed_during_overwrite_is_the_old_or_the_new_index(tmp_path, trial):
    from moon_cli.index.lance import open_table, read_info
    from test_index_search_evaluate import fake_embeddings

    fake_embeddings(tmp_path / "old.parquet", 3000, 32, "old-model", prefix="old")
    fake_embeddings(tmp_path / "new.parquet", 3000, 32, "new-model", prefix="new")
    assert run_moon("index", tmp_path / "old.parquet", "-o", tmp_path / "idx").exit_code == 0
    kill_after(moon_cmd("index", tmp_path / "new.parquet", "-o", tmp_path / "idx", "--overwrite",
                        "--index-type", "ivf_hnsw_sq"), random.Random(trial).uniform(1, 6))
    label = read_info(tmp_path / "idx")["model_id"]
    ids = open_table(tmp_path / "idx").to_arrow().column("id").to_pylist()
    assert label in ("old-model", "new-model") and all(i.startswith(label.split("-")[0]) for i in ids)
    r = run_moon("index", tmp_path / "new.parquet", "-o", tmp_path / "idx", "--overwrite")
    assert r.exit_code == 0 and read_info(tmp_path / "idx")["model_id"] == "new-model"
    assert no_litter(tmp_path) == []


def test_detect_killed_then_rerun_leaves_a_whole_table_and_no_litter(inputs, tmp_path):
    det = tmp_path / "detector"
    assert run_moon("detect-train", inputs["world"] / "boxes.parquet", "-o", det, "--epochs", 1, "--imgsz", 64,
                    "--max-images", 60).exit_code == 0
    args = [inputs["catalog"], "--detector", det, "-q", "--batch-size", 4]
    for trial in range(TRIALS):
        kill_after(moon_cmd("detect", *args, "-o", tmp_path / "d.parquet", "--overwrite"),
                   random.Random(trial).uniform(2, 6))
    assert subprocess.run(moon_cmd("detect", *args, "-o", tmp_path / "d.parquet", "--overwrite")).returncode == 0
    n = sum(len(p) for p in pq.read_table(inputs["catalog"]).column("image_paths").to_pylist())
    assert pq.read_table(tmp_path / "d.parquet").num_rows == n
    assert no_litter(tmp_path) == []
    assert json.loads((det / "summary.json").read_text())["epochs"] == 1
