"""`moon detect-train`: train the core-product detector (ultralytics YOLO, random init)."""

from pathlib import Path

import click

from moon_cli.options import device_option, echo_summary, output_option, overwrite_option, quiet_option, seed_option


@click.command("detect-train")
@click.argument("boxes")
@output_option("Detector directory to write (weights.pt + summary.json).", kind="dir")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--imgsz", type=click.IntRange(min=32), default=128, show_default=True, help="Training image size (px).")
@click.option("--model", "model_yaml", default="yolov8n.yaml", show_default=True,
              help="ultralytics model yaml to build from (random init; no weights are downloaded).")
@click.option("--max-images", type=click.IntRange(min=0), default=1000, show_default=True,
              help="Train on at most this many boxed images (0 = all).")
@click.option("--batch-size", "batch_size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--batch", "batch_legacy", type=click.IntRange(min=1), default=None, hidden=True)  # the old spelling
@seed_option("Training seed")
@device_option()
@overwrite_option
@quiet_option
def detect_train(boxes, output: Path, epochs, imgsz, model_yaml, max_images, batch_size, batch_legacy, seed, device,
                 overwrite, quiet):
    """Train a one-class core-product detector from BOXES (image_path, bbox), e.g. a world's boxes.parquet.

    Builds the model from an ultralytics yaml (random init), trains on CPU fully offline, validates
    on a held-out split (mAP50, mAP50-95) and reports the IoU of the top box with the ground truth on
    held-out images. The default (yolov8n, 128 px, 1,000 images, 10 epochs) takes a few minutes on 2
    cores.

    \b
    Example (each runs in tests/test_docs.py):
      moon detect-train world/boxes.parquet -o detector --epochs 1 --imgsz 64 --max-images 40
    """
    from moon_cli.contracts import BOXES
    from moon_cli.detect.train import train_detector
    from moon_cli.devices import choose_device
    from moon_cli.io import atomic_dir, read_table

    batch_size = batch_legacy or batch_size
    device = choose_device(device)

    rows = read_table(boxes, BOXES).table.to_pylist()
    if not rows:
        from moon_cli.errors import MoonError

        raise MoonError(f"{boxes}: no boxes to train on")
    with atomic_dir(output, overwrite=overwrite) as tmp:
        summary = train_detector(rows, tmp, epochs, imgsz, model_yaml, max_images, batch_size, seed, device=device)
    echo_summary(f"moon detect-train: wrote {output}", {
        "images": f"{summary['images']['train']} train, {summary['images']['val']} held out",
        "mAP50": summary["map50"], "mAP50-95": summary["map50_95"],
        "held-out IoU": f"mean {summary['heldout_mean_iou']}, share >= 0.5: {summary['heldout_share_iou_ge_0.5']}",
        "time": f"{summary['seconds']} s",
    })
