"""Train a one-class core-product detector from a boxes table, random init from a model yaml."""

from __future__ import annotations

import json
import random
import shutil
import tempfile
import time
from pathlib import Path

from moon_cli.detect.dataset import held_out, write_yolo_dataset
from moon_cli.errors import MoonError


def box_iou(a, b) -> float:
    ix0, iy0, ix1, iy1 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, ix1 - ix0) * max(0.0, iy1 - iy0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def train_detector(rows: list[dict], out: Path, epochs: int, imgsz: int, model_yaml: str, max_images: int,
                   batch: int, seed: int, workers: int = 0, device: str = "cpu") -> dict:
    """Train, validate on a held-out split, measure IoU against ground truth; write weights + summary."""
    from moon_cli.detect.yolo import MODEL_YAMLS, offline_ultralytics

    if model_yaml.endswith(".pt") and not Path(model_yaml).is_file():
        # ultralytics would try to download a named .pt (e.g. yolov8n.pt) before failing: nothing is fetched here
        raise MoonError(f"--model {model_yaml}: no such file; pretrained weights are never downloaded — give a "
                        f"model yaml ({', '.join(MODEL_YAMLS)}) or a local .pt file")
    YOLO = offline_ultralytics()
    t0 = time.perf_counter()
    rows = [r for r in rows if r.get("bbox") is not None]
    if max_images and len(rows) > max_images:
        rows = random.Random(seed).sample(rows, max_images)
        rows.sort(key=lambda r: r["image_path"])
    with tempfile.TemporaryDirectory(prefix="moon-yolo-") as tmp:
        data, counts = write_yolo_dataset(rows, Path(tmp) / "data")
        try:
            model = YOLO(model_yaml)
        except Exception as exc:  # noqa: BLE001 - ultralytics raises several types for a bad yaml
            raise MoonError(f"--model {model_yaml}: cannot build a YOLO model from it ({exc}); "
                            f"try yolov8n.yaml") from None
        model.train(data=str(data), epochs=epochs, imgsz=imgsz, batch=batch, device=device, workers=workers,
                    project=str(Path(tmp) / "runs"), name="train", exist_ok=True, seed=seed, deterministic=True,
                    plots=False, verbose=False, pretrained=False, amp=False, cache=False)
        best = Path(model.trainer.best if Path(model.trainer.best).exists() else model.trainer.last)
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(best, out / "weights.pt")
        trained = YOLO(str(out / "weights.pt"))
        metrics = trained.val(data=str(data), imgsz=imgsz, batch=batch, device=device, plots=False, verbose=False,
                              workers=workers, project=str(Path(tmp) / "runs"), name="val", exist_ok=True)
        map50, map5095 = float(metrics.box.map50), float(metrics.box.map)
    # IoU of the top detection against ground truth on held-out images
    val_rows = [r for r in rows if held_out(r["image_path"], 0.15)]
    ious = []
    for start in range(0, len(val_rows), 32):
        chunk = val_rows[start:start + 32]
        for row, res in zip(chunk, trained.predict([r["image_path"] for r in chunk], imgsz=imgsz, conf=0.01,
                                                   device=device, verbose=False)):
            boxes = res.boxes
            ious.append(box_iou(boxes.xyxy[boxes.conf.argmax()].tolist(), row["bbox"]) if len(boxes) else 0.0)
    summary = {
        "model": model_yaml, "epochs": epochs, "imgsz": imgsz, "images": counts, "seed": seed,
        "map50": round(map50, 4), "map50_95": round(map5095, 4),
        "heldout_mean_iou": round(sum(ious) / len(ious), 4) if ious else None,
        "heldout_share_iou_ge_0.5": round(sum(i >= 0.5 for i in ious) / len(ious), 4) if ious else None,
        "seconds": round(time.perf_counter() - t0, 1),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary
