"""Benchmark: `moon detect` images/s beside a bare ultralytics predict loop on the same images.

    python benchmarks/bench_detect.py WORLD_DIR DETECTOR_DIR [--images 800] [--batch 16]
"""

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("world")
    ap.add_argument("detector")
    ap.add_argument("--images", type=int, default=800)
    ap.add_argument("--batch", type=int, default=16)
    args = ap.parse_args()
    images = sorted(str(p) for p in Path(args.world, "images").glob("*.jpg"))[: args.images]
    imgsz = json.loads(Path(args.detector, "summary.json").read_text())["imgsz"]
    tmp = Path(tempfile.mkdtemp(prefix="bench-detect-"))
    folder = tmp / "imgs"
    folder.mkdir()
    for p in images:
        (folder / Path(p).name).symlink_to(p)

    from moon_cli.detect.yolo import offline_ultralytics

    YOLO = offline_ultralytics()
    model = YOLO(str(Path(args.detector, "weights.pt")))
    model.predict(images[: args.batch], imgsz=imgsz, device="cpu", verbose=False)  # warm-up
    start = time.perf_counter()
    n = 0
    for i in range(0, len(images), args.batch):  # the bare loop: file paths in, boxes out, nothing written
        n += len(model.predict(images[i:i + args.batch], imgsz=imgsz, device="cpu", verbose=False))
    bare = n / (time.perf_counter() - start)

    # moon's pipeline in-process with the same warmed-up model: safe decoding, crops, Parquet rows
    from moon_cli.contracts import DETECTIONS
    from moon_cli.detect.predict import detect_batches
    from moon_cli.io import TableWriter

    start = time.perf_counter()
    statuses: dict[str, int] = {}
    with TableWriter(tmp / "det.parquet", DETECTIONS.schema, contract=DETECTIONS) as writer:
        for table in detect_batches(iter(images), model, imgsz, tmp / "crops", 0.25, args.batch):
            writer.write(table)
            for s in table.column("status").to_pylist():
                statuses[s] = statuses.get(s, 0) + 1
    loop = writer.rows / (time.perf_counter() - start)
    assert writer.rows == len(images), (writer.rows, len(images))
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "moon_cli.cli", "detect", str(folder), "--detector", args.detector,
                    "-o", str(tmp / "det2.parquet"), "--batch-size", str(args.batch), "-q"], check=True,
                   capture_output=True)
    with_startup = len(images) / (time.perf_counter() - start)
    shutil.rmtree(tmp)
    print("| implementation | images | images/s |\n|---|---|---|")
    print(f"| bare ultralytics predict loop (file paths in, nothing written) | {len(images)} | {bare:.0f} |")
    print(f"| moon detect pipeline, same warm model (safe decoding, crops written, Parquet) | {len(images)} | "
          f"{loop:.0f} |")
    print(f"| moon detect, whole command (process start, imports, model load) | {len(images)} | {with_startup:.0f} |")
    print(f"moon statuses: {statuses}; moon pipeline / bare: {loop / bare:.2f} (target >= 0.90)")


if __name__ == "__main__":
    main()
