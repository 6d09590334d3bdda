import json

import pyarrow.parquet as pq
import pytest
from PIL import Image

from moon_cli.contracts import DETECTIONS
from moon_cli.io import read_table

from conftest import run_moon


def test_detect_train_writes_weights_and_a_summary(detector):
    summary = json.loads((detector / "summary.json").read_text())
    assert (detector / "weights.pt").is_file()
    assert {"map50", "map50_95", "heldout_mean_iou", "heldout_share_iou_ge_0.5"} <= set(summary)
    assert summary["images"]["train"] > 0 and summary["images"]["val"] > 0
    assert 0 <= summary["heldout_mean_iou"] <= 1


def test_detect_on_a_catalogue_gives_one_row_per_image_and_crops(world, detector, tmp_path):
    out = tmp_path / "det.parquet"
    r = run_moon("detect", world / "catalog.parquet", "--detector", detector, "-o", out, "--conf", 0.05, "-q")
    assert r.exit_code == 0, r.output
    rows = read_table(out, DETECTIONS).table.to_pylist()
    n_images = sum(len(p) for p in pq.read_table(world / "catalog.parquet").column("image_paths").to_pylist())
    assert len(rows) == n_images
    for row in rows:
        assert row["status"] in ("ok", "no_detection")
        if row["status"] == "ok":
            x0, y0, x1, y1 = row["bbox"]
            with Image.open(row["crop_path"]) as crop:
                assert abs(crop.width - (x1 - x0)) <= 2 and abs(crop.height - (y1 - y0)) <= 2
            assert row["score"] >= 0.05
        else:
            assert row["crop_path"] == row["image_path"] and row["bbox"] is None


def test_broken_images_are_reported_per_row_and_the_rest_processed(world, detector, tmp_path, monkeypatch):
    folder = tmp_path / "imgs"
    (folder / "nested").mkdir(parents=True)
    Image.new("RGB", (64, 64), (200, 30, 30)).save(folder / "good.jpg")
    Image.new("L", (64, 64), 128).save(folder / "nested" / "gray.png")
    good = (folder / "good.jpg").read_bytes()
    (folder / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "corrupt.webp").write_bytes(b"RIFF\x00\x00\x00\x00WEBPjunkjunk")
    (folder / "notes.png").write_text("this is a text file, not a png")
    Image.new("RGB", (300, 300)).save(folder / "bomb.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100 * 100)  # 300x300 is > 2x the limit: a "bomb"
    out = tmp_path / "det.parquet"
    r = run_moon("detect", folder, "--weights", detector, "-o", out, "-q")
    assert r.exit_code == 0, r.output
    rows = {p.split("/")[-1]: row for row in read_table(out, DETECTIONS).table.to_pylist() for p in [row["image_path"]]}
    assert set(rows) == {"good.jpg", "gray.png", "truncated.jpg", "empty.jpg", "corrupt.webp", "notes.png", "bomb.png"}
    for name in ("truncated.jpg", "empty.jpg", "corrupt.webp", "notes.png", "bomb.png"):
        assert rows[name]["status"] == "error" and rows[name]["error"], name
    assert "decompression bomb" in rows["bomb.png"]["error"]
    assert rows["good.jpg"]["status"] in ("ok", "no_detection") and rows["gray.png"]["status"] != "error"
    assert "5 error" in r.output


def test_missing_weights_and_existing_output_are_refused(world, detector, tmp_path):
    r = run_moon("detect", world / "images", "--detector", tmp_path / "none", "-o", tmp_path / "d.parquet")
    assert r.exit_code == 1 and "moon detect-train" in r.output
    (tmp_path / "d.parquet").write_text("keep me")
    r = run_moon("detect", world / "images", "--detector", detector, "-o", tmp_path / "d.parquet")
    assert r.exit_code == 1 and "--overwrite" in r.output
    assert (tmp_path / "d.parquet").read_text() == "keep me"


def test_held_out_split_does_not_depend_on_where_the_world_lies():
    from moon_cli.detect.dataset import held_out

    names = [f"images/p{i:06d}_0.jpg" for i in range(400)]
    here = [held_out(f"/work/a/world/{n}", 0.15) for n in names]
    there = [held_out(f"/tmp/clone/runs/world/{n}", 0.15) for n in names]
    assert here == there and 20 < sum(here) < 100


class _RunsCode:
    """A pickle payload: unpickling it calls os.system (what a crafted detector file does)."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.marker}",)


@pytest.mark.parametrize("stage", ["detect", "detect-train"])
def test_a_crafted_detector_file_runs_no_code(world, detector, tmp_path, stage):
    """`.pt` detector files are pickles; loading one must never run the code a crafted file carries."""
    import torch

    marker = tmp_path / "pwned"
    crafted = tmp_path / "evil" / "weights.pt"
    crafted.parent.mkdir()
    torch.save({"model": _RunsCode(marker)}, crafted)
    if stage == "detect":
        r = run_moon("detect", world / "images", "--detector", crafted.parent, "-o", tmp_path / "d.parquet", "-q")
    else:
        r = run_moon("detect-train", world / "boxes.parquet", "-o", tmp_path / "det", "--model", crafted,
                     "--epochs", 1, "--imgsz", 64, "--max-images", 40)
    assert not marker.exists(), "the crafted file ran code"
    assert r.exit_code == 1 and str(crafted) in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1, r.output
    assert not (tmp_path / "d.parquet").exists() and not (tmp_path / "det" / "weights.pt").exists()
    # the real detector still loads under the same safe mode
    r = run_moon("detect", world / "images", "--detector", detector, "-o", tmp_path / "ok.parquet", "-q")
    assert r.exit_code == 0, r.output


def test_a_sub_pixel_box_is_one_rows_fallback_not_a_crash(tmp_path):
    """A detector can return a box under a pixel wide; that image falls back to the full photo, the run goes on."""
    import torch
    from types import SimpleNamespace

    from moon_cli.detect.predict import _detect

    for name in ("a.jpg", "b.jpg"):
        Image.new("RGB", (64, 64), (120, 30, 30)).save(tmp_path / name)
    (tmp_path / "crops").mkdir()
    boxes = {0: ([[10.2, 10.2, 10.4, 40.0]], [0.9]), 1: ([[8.0, 8.0, 40.0, 40.0]], [0.8])}

    class Boxes(SimpleNamespace):  # what ultralytics' Results.boxes offers moon: xyxy, conf, len()
        def __len__(self):
            return len(self.conf)

    class Detector:  # the one call moon makes: predict(list of BGR arrays) -> results with .boxes
        def predict(self, arrays, **kwargs):
            return [SimpleNamespace(boxes=Boxes(xyxy=torch.tensor(boxes[i][0]), conf=torch.tensor(boxes[i][1])))
                    for i in range(len(arrays))]
    table = _detect([str(tmp_path / "a.jpg"), str(tmp_path / "b.jpg")], Detector(), 64, tmp_path / "crops", 0.25)
    rows = table.to_pylist()
    assert rows[0]["status"] == "no_detection" and rows[0]["crop_path"].endswith("a.jpg")
    assert "pixel" in rows[0]["error"]
    assert rows[1]["status"] == "ok" and Image.open(rows[1]["crop_path"]).size == (32, 32)


def test_detect_train_never_reaches_for_a_named_pt(world_template, tmp_path):
    r = run_moon("detect-train", world_template / "boxes.parquet", "-o", tmp_path / "det", "--model", "yolov8n.pt")
    assert r.exit_code == 1 and "never downloaded" in r.output and not (tmp_path / "det").exists()
