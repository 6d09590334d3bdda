"""Streaming core-product detection: images in, one row per image out, crops written to disk.

Memory does not grow with the number of images: inputs are listed lazily and processed in batches.
Every image gets a row: ``ok`` (box + crop), ``no_detection`` (nothing above --conf: the full image is
the crop) or ``error`` (the image could not be read; the message says why).
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pyarrow as pa

from moon_cli.contracts import DETECTIONS
from moon_cli.errors import MoonError
from moon_cli.model.images import InputError, load_image

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff"}


def iter_folder_images(folder: Path) -> Iterator[str]:
    """Image files under ``folder``, recursively, in a stable order (by suffix; contents are checked later)."""
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if Path(name).suffix.lower() in IMAGE_SUFFIXES:
                yield os.path.join(root, name)


def iter_table_images(table: pa.Table, source: str) -> Iterator[str]:
    """Image paths from a catalogue (``image_paths``), queries or pairs (``query_image``, distinct), or any table
    with an ``image_path`` column. The columns are checked now, before any image is read."""
    from moon_cli.contracts import BOXES, CATALOG, QUERIES, check_schema

    for contract in (CATALOG, QUERIES, BOXES):  # e.g. image_paths stored as one string, not a list
        check_schema(table.schema, contract, source, present_only=True)
    if "image_paths" in table.column_names:
        return (p for paths in table.column("image_paths").to_pylist() for p in paths or [])
    if "image_path" in table.column_names:
        return (p for p in table.column("image_path").to_pylist() if p)
    if "query_image" in table.column_names:
        return iter(dict.fromkeys(p for p in table.column("query_image").to_pylist() if p))
    raise MoonError(f"{source}: needs an 'image_paths' (catalogue), 'query_image' (queries, pairs) or "
                    f"'image_path' column; has {', '.join(table.column_names)}")


def load_detector(weights_dir: Path):
    from moon_cli.detect.yolo import offline_ultralytics

    weights = Path(weights_dir) / "weights.pt" if Path(weights_dir).is_dir() else Path(weights_dir)
    if not weights.is_file():
        raise MoonError(f"detector {weights_dir}: no detector weights there (weights.pt); train one with "
                        f"`moon detect-train`")
    summary = weights.parent / "summary.json"
    imgsz = json.loads(summary.read_text()).get("imgsz", 128) if summary.is_file() else 128
    YOLO = offline_ultralytics()
    try:
        return YOLO(str(weights)), imgsz
    except Exception as exc:  # noqa: BLE001 - torch / ultralytics raise many types for a bad or unsafe file
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise MoonError(f"detector {weights}: not a loadable detector ({first[:200]}); detector files are loaded "
                        f"without running code — train one with `moon detect-train`") from None


def crop_name(image_path: str) -> str:
    stem = Path(image_path).stem[:40]
    return f"{stem}-{hashlib.sha1(image_path.encode()).hexdigest()[:10]}.jpg"


def batched(paths: Iterable[str], batch_size: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for path in paths:
        batch.append(path)
        if len(batch) == batch_size:
            yield batch
            batch = []
    if batch:
        yield batch


def detect_batches(paths: Iterable[str], detector, imgsz: int, crops_dir: Path, conf: float,
                   batch_size: int, device: str = "cpu") -> Iterator[pa.Table]:
    """Yield one DETECTIONS table per batch of input images."""
    crops_dir.mkdir(parents=True, exist_ok=True)
    for batch in batched(paths, batch_size):
        yield _detect(batch, detector, imgsz, crops_dir, conf, device)


def failed_table(paths: list[str], message: str) -> pa.Table:
    """DETECTIONS rows with status=error for images that could not be processed at all."""
    n = len(paths)
    return pa.table({"image_path": [os.path.abspath(p) for p in paths], "bbox": [None] * n, "score": [None] * n,
                     "crop_path": [None] * n, "status": ["error"] * n, "error": [message] * n},
                    schema=DETECTIONS.schema)


def _detect(paths: list[str], detector, imgsz: int, crops_dir: Path, conf: float, device: str = "cpu") -> pa.Table:
    rows = {f.name: [] for f in DETECTIONS.fields}
    images, ok_index = [], []
    results: list[dict] = [dict() for _ in paths]
    for i, path in enumerate(paths):
        try:
            images.append(load_image(path, f"image {path}", "file"))
            ok_index.append(i)
        except InputError as exc:
            results[i] = dict(bbox=None, score=None, crop_path=None, status="error", error=str(exc.message))
    if images:
        # ultralytics' native input is a BGR array; handing it PIL images costs it a slower conversion
        arrays = [np.ascontiguousarray(np.asarray(img)[..., ::-1]) for img in images]  # (H, W, 3) BGR
        preds = detector.predict(arrays, imgsz=imgsz, conf=min(conf, 0.01), device=device, verbose=False)
        for i, img, pred in zip(ok_index, images, preds):
            boxes = pred.boxes
            best = int(boxes.conf.argmax()) if len(boxes) else None
            score = float(boxes.conf[best]) if best is not None else None
            if best is None or score < conf:
                results[i] = dict(bbox=None, score=score, crop_path=paths[i], status="no_detection", error=None)
                continue
            x0, y0, x1, y1 = (float(v) for v in boxes.xyxy[best].tolist())
            left, top = max(0, int(x0)), max(0, int(y0))
            right, bottom = min(img.width, int(round(x1))), min(img.height, int(round(y1)))
            if right - left < 1 or bottom - top < 1:  # a sub-pixel box: no crop to cut, the photo stands in
                results[i] = dict(bbox=None, score=score, crop_path=paths[i], status="no_detection",
                                  error=f"the best box {[round(v, 2) for v in (x0, y0, x1, y1)]} is under a pixel")
                continue
            crop_path = crops_dir / crop_name(paths[i])
            img.crop((left, top, right, bottom)).save(crop_path, "JPEG", quality=92)
            results[i] = dict(bbox=[x0, y0, x1, y1], score=score, crop_path=str(crop_path), status="ok", error=None)
    for path, res in zip(paths, results):
        rows["image_path"].append(os.path.abspath(path))
        for k in ("bbox", "score", "crop_path", "status", "error"):
            rows[k].append(res[k])
    return pa.table(rows, schema=DETECTIONS.schema)


def core_product_crop(photo, detector, imgsz: int, conf: float = 0.25, device: str = "cpu"):
    """The core product cut from one in-memory photo (a PIL image), or None when nothing is detected."""
    bgr = np.ascontiguousarray(np.asarray(photo)[..., ::-1])  # (H, W, 3)
    boxes = detector.predict([bgr], imgsz=imgsz, conf=conf, device=device, verbose=False)[0].boxes
    if not len(boxes):
        return None
    x0, y0, x1, y1 = boxes.xyxy[int(boxes.conf.argmax())].tolist()
    left, top = max(0, int(x0)), max(0, int(y0))
    right, bottom = min(photo.width, int(round(x1))), min(photo.height, int(round(y1)))
    return photo.crop((left, top, right, bottom)) if right - left >= 1 and bottom - top >= 1 else None
