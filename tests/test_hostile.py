"""A hostile-input corpus: every table stage fed every kind of broken file as its main input (and the
catalogue as a second one). Each case must end in one line that names the file, exit code 1, no traceback,
no "internal error", and nothing written at the output. The files are generated here, not checked in."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import run_moon

BAD_KINDS = ("missing", "empty", "text", "truncated", "no columns", "wrong types")


@pytest.fixture(scope="module")
def bad_files(world_template, tmp_path_factory):
    """name → path of one broken file per kind; the originals come from a real world so truncation is real."""
    d = tmp_path_factory.mktemp("hostile")
    good = (world_template / "catalog.parquet").read_bytes()
    (d / "empty.parquet").write_bytes(b"")
    (d / "text.parquet").write_text("item_id,title\np1,red mug\n")
    (d / "truncated.parquet").write_bytes(good[: len(good) // 2])
    pq.write_table(pa.table({"nothing": [1, 2]}), d / "no columns.parquet")
    wrong = {name: pa.array([1.5, 2.5]) for name in (
        "item_id", "title", "category_path", "attributes", "image_paths", "user_id", "session_id", "ts",
        "query_text", "query_image", "event", "pair_id", "query_modality", "split", "source", "id", "vector",
        "image_path", "bbox", "negatives")}
    pq.write_table(pa.table(wrong), d / "wrong types.parquet")
    return {kind: d / f"{kind}.parquet" for kind in BAD_KINDS}


def _stages(world, tmp):
    """stage → a function of (bad file) giving its argv; the bad file stands where a real input would."""
    cat = str(world / "catalog.parquet")
    return {
        "mine-pairs": lambda bad: ["mine-pairs", bad, "-o", tmp / "out.parquet"],
        "mine-pairs --catalog": lambda bad: ["mine-pairs", world / "behavior.parquet", "--catalog", bad,
                                             "-o", tmp / "out.parquet"],
        "sample-negatives": lambda bad: ["sample-negatives", bad, "--catalog", cat, "-o", tmp / "out.parquet"],
        "embed": lambda bad: ["embed", bad, "-m", "tiny", "-o", tmp / "out.parquet", "-q"],
        "detect": lambda bad: ["detect", bad, "--detector", tmp / "no-detector", "-o", tmp / "out.parquet", "-q"],
        "detect-train": lambda bad: ["detect-train", bad, "-o", tmp / "out"],
        "index": lambda bad: ["index", bad, "-o", tmp / "out"],
        "train": lambda bad: ["train", bad, "--catalog", cat, "-o", tmp / "out", "--steps", 1, "-q"],
        "train --catalog": lambda bad: ["train", "--objective", "pretrain", "--catalog", bad, "-o", tmp / "out",
                                        "--steps", 1, "-q"],
        "ctr": lambda bad: ["ctr", bad, "--catalog", cat, "-o", tmp / "out", "-q"],
        "inspect": lambda bad: ["inspect", bad, "--contract", "catalog"],
    }


STAGES = ("mine-pairs", "mine-pairs --catalog", "sample-negatives", "embed", "detect", "detect-train", "index",
          "train", "train --catalog", "ctr", "inspect")


@pytest.mark.parametrize("stage", STAGES)
@pytest.mark.parametrize("kind", BAD_KINDS)
def test_every_stage_on_every_broken_input_is_one_clear_line(world_template, bad_files, tmp_path, stage, kind):
    bad = str(tmp_path / "no such file.parquet") if kind == "missing" else str(bad_files[kind])
    r = run_moon(*_stages(world_template, tmp_path)[stage](bad))
    lines = r.output.strip().splitlines()
    assert r.exit_code == 1, r.output
    assert lines and lines[-1].startswith("Error: ") and bad in lines[-1], r.output
    assert "Traceback" not in r.output and "internal error" not in r.output
    assert not (tmp_path / "out.parquet").exists() and not (tmp_path / "out").exists()
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary litter


def test_a_bench_or_report_that_is_not_one_is_named(tmp_path):
    (tmp_path / "bench").mkdir()
    (tmp_path / "bench" / "bench.json").write_text("{broken")
    r = run_moon("evaluate", tmp_path / "bench", "-m", "tiny", "-o", tmp_path / "out")
    assert r.exit_code == 1 and "bench.json" in r.output and "internal error" not in r.output
    (tmp_path / "report").mkdir()
    (tmp_path / "report" / "metrics.json").write_text(json.dumps({"label": "x"}))
    r = run_moon("exchange-rate", tmp_path / "report", tmp_path / "report", "--ctr", tmp_path / "nothing")
    assert r.exit_code == 1 and "internal error" not in r.output and "Traceback" not in r.output
    assert not (tmp_path / "out").exists()
