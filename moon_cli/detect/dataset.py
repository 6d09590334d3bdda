"""Export a boxes table (image_path, bbox) as an ultralytics YOLO dataset (one class: product)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from PIL import Image

from moon_cli.errors import MoonError
from moon_cli.model.images import has_alpha, to_rgb


def held_out(path: str, val_fraction: float) -> bool:
    """Deterministic split by a hash of the image's folder and file name.

    Not the absolute path: the same world copied elsewhere (another clone, machine or user) must give
    the same split, and so the same detector and figures.
    """
    key = "/".join(Path(path).parts[-2:])
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:4], "little")
    return h / 2 ** 32 < val_fraction


def _place(photo: str, link: Path) -> None:
    """The photo in the dataset: a symlink, or — for a photo with transparency, which ultralytics would read
    with its alpha band dropped — a copy composited on white, as every other stage sees it."""
    with Image.open(photo) as img:
        alpha = has_alpha(img)
        if alpha:
            to_rgb(img).save(link.with_suffix(".png"))
    if not alpha:
        os.symlink(os.path.abspath(photo), link)


def write_yolo_dataset(rows: list[dict], out: Path, val_fraction: float = 0.15) -> tuple[Path, dict]:
    """Symlink images into images/{train,val}, write labels/{train,val}/*.txt and data.yaml."""
    counts = {"train": 0, "val": 0, "skipped": 0}
    for split in ("train", "val"):
        (out / "images" / split).mkdir(parents=True, exist_ok=True)
        (out / "labels" / split).mkdir(parents=True, exist_ok=True)
    for n, row in enumerate(rows):
        path, bbox = row["image_path"], row["bbox"]
        if bbox is None or not os.path.isfile(path):
            counts["skipped"] += 1
            continue
        w, h = row.get("width"), row.get("height")
        if not w or not h:
            with Image.open(path) as img:
                w, h = img.size
        x0, y0, x1, y1 = bbox
        if x1 <= x0 or y1 <= y0:
            counts["skipped"] += 1
            continue
        split = "val" if held_out(path, val_fraction) else "train"
        _place(path, out / "images" / split / f"{n:07d}{Path(path).suffix.lower()}")
        cx, cy, bw, bh = (x0 + x1) / 2 / w, (y0 + y1) / 2 / h, (x1 - x0) / w, (y1 - y0) / h
        (out / "labels" / split / f"{n:07d}.txt").write_text(f"0 {cx:.6f} {cy:.6f} {bw:.6f} {bh:.6f}\n")
        counts[split] += 1
    if counts["train"] == 0 or counts["val"] == 0:
        raise MoonError(f"boxes: need images in both splits to train and validate (train {counts['train']}, "
                        f"val {counts['val']}); give more boxes")
    data = out / "data.yaml"
    data.write_text(f"path: {out.resolve()}\ntrain: images/train\nval: images/val\nnames:\n  0: product\n")
    return data, counts
