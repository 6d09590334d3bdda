"""`moon detect`: core-product boxes and crops for a folder of images, a catalogue, or -."""

from pathlib import Path

import click

from moon_cli.options import (Number, detector_option, device_option, echo_summary, output_option,
                              overwrite_option, quiet_option, ray_options)


@click.command()
@click.argument("input_path", metavar="INPUT")
@output_option("Detections Parquet file, or - for an Arrow stream on stdout.")
@detector_option(required=True)
@click.option("--crops-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Where crops go [default: crops/ beside the output].")
@click.option("--conf", type=Number(0, 1), default=0.25, show_default=True,
              help="Below this confidence the full image is the crop (status no_detection).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@device_option()
@ray_options
@overwrite_option
@quiet_option
def detect(input_path, output, detector, crops_dir, conf, batch_size, device, ray_address, num_workers, cpus_per_worker,
           overwrite, quiet):
    """Detect the core product in every image of INPUT.

    INPUT is a folder (searched recursively for jpg, png, webp, ...), a catalogue Parquet (its
    image_paths), queries or pairs (their query_image: crops for image search queries), a table with an
    image_path column, or - (such a table on stdin). One row per image:
    image_path, bbox, score, crop_path, status (ok / no_detection / error), error. Unreadable images
    get status=error and the run goes on.

    \b
    Example (each runs in tests/test_docs.py):
      moon detect world -o detections.parquet --detector detector
      moon detect world -o ray-detections.parquet --detector detector --ray --num-workers 2
    """
    import time

    from moon_cli.progress import progress

    from moon_cli.contracts import DETECTIONS
    from moon_cli.devices import choose_device
    from moon_cli.detect.predict import detect_batches, iter_folder_images, iter_table_images, load_detector
    from moon_cli.io import TableWriter, ensure_new_output, is_stdio, make_manifest, read_table, resolve_paths

    ensure_new_output(output, overwrite)
    device = choose_device(device)
    if not is_stdio(input_path) and Path(input_path).is_dir():
        paths = iter_folder_images(Path(input_path))
    else:
        art = read_table(input_path)
        table = resolve_paths(art.table, ("image_paths", "image_path", "query_image"), art.base_dir, art.source)
        paths = iter_table_images(table, art.source)
    crops = crops_dir or (Path.cwd() / "crops" if is_stdio(output) else Path(output).resolve().parent / "crops")
    if ray_address:
        from moon_cli.detect.remote import RayDetector
        from moon_cli.ray_pool import connect

        connect(ray_address)
        remote = RayDetector(Path(detector), crops, conf, num_workers=num_workers, cpus_per_worker=cpus_per_worker)
        imgsz, tables = remote.imgsz, remote.detect_batches(paths, batch_size)
    else:
        remote = None
        model, imgsz = load_detector(Path(detector))
        tables = detect_batches(paths, model, imgsz, crops, conf, batch_size, device)
    manifest = make_manifest("detect", {"conf": conf, "imgsz": imgsz, "weights": str(detector)},
                             inputs=[input_path] if not Path(input_path).is_dir() else [])
    counts = {"ok": 0, "no_detection": 0, "error": 0}
    t0 = time.perf_counter()
    bar = progress(desc="moon detect", unit="img", quiet=quiet, leave=False)
    try:
        with TableWriter(output, DETECTIONS.schema, contract=DETECTIONS, manifest=manifest,
                         overwrite=overwrite) as writer:
            for table in tables:
                writer.write(table)
                for s in table.column("status").to_pylist():
                    counts[s] += 1
                bar.update(table.num_rows)
    finally:
        if remote:
            remote.close()
    bar.close()
    seconds = time.perf_counter() - t0
    total = sum(counts.values())
    echo_summary(f"moon detect: wrote {output}", {
        "images": f"{total} ({counts['ok']} ok, {counts['no_detection']} no detection, {counts['error']} error)",
        "crops": str(crops),
        "time": f"{seconds:.1f} s ({total / seconds if seconds else 0:.0f} images/s)",
        **({"ray": f"{remote.num_workers} worker(s)" + (f", {remote.pool.workers_lost} lost and replaced"
                                                        if remote.pool.workers_lost else "")} if remote else {}),
    })
