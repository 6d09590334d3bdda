"""`moon embed`: products (a folder of photos or a catalogue) or queries → unit-norm vectors."""

import re
from pathlib import Path

import click

from moon_cli.options import (device_option, echo_summary, model_option, output_option, overwrite_option, quiet_option,
                              ray_options)


def _shard(text):
    if text is None:
        return None
    m = re.fullmatch(r"(\d+)/(\d+)", text)
    if not m or not 0 <= int(m[1]) < int(m[2]):
        raise click.BadParameter(f"'{text}' is not I/N with 0 <= I < N, e.g. 0/4")
    return int(m[1]), int(m[2])


@click.command("embed")
@click.argument("input_path", metavar="INPUT")
@model_option()
@output_option("Embeddings Parquet, or - for an Arrow stream on stdout.")
@click.option("--detections", default=None, help="Core-product crops from `moon detect` (MOON models use them).")
@click.option("--kind", type=click.Choice(["auto", "product", "query"]), default="auto", show_default=True,
              help="What the rows are (auto: from the columns).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--dim", type=click.IntRange(min=1), default=None, help="Keep the first D dimensions (Matryoshka) and renormalise.")
@click.option("--shard", "shard", default=None, help="I/N: embed only this process's part (outputs concatenate).")
@click.option("--resume", is_flag=True, help="Skip ids already written (by a finished or an interrupted run).")
@device_option()
@click.option("--base-dir", type=click.Path(file_okay=False, exists=True, path_type=Path), default=None,
              help="Where relative photo paths of a table piped on - lie [default: the current directory]; a "
                   "Parquet file's own paths resolve against its directory.")
@click.option("--text-only", is_flag=True,
              help="Allow a product table without an image_paths column (products embedded from their text alone).")
@ray_options
@overwrite_option
@quiet_option
def embed(input_path, model_name, output, detections, kind, batch_size, dim, shard, resume, device, base_dir, text_only,
          ray_address, num_workers, cpus_per_worker, overwrite, quiet):
    """Embed INPUT: a folder of product photos (recursive; one product per photo), a catalogue or product
    listings Parquet (one product per row: all its photos, crops, title, category, attributes), a
    queries Parquet, or - (an Arrow stream of any of these).

    Writes id, vector (float32, unit norm), status / error (a row that fails is reported, not fatal)
    and the input's columns. The model's identity is stored in the file's metadata. When every row
    fails the exit code is 1.

    \b
    Example (each runs in tests/test_docs.py):
      moon embed world/catalog.parquet -m model --detections detections.parquet -o embeddings.parquet
      moon embed world/catalog.parquet -m tiny -o untrained.parquet
      moon embed world/catalog.parquet -m minilm -o minilm.parquet   # make baselines
      moon embed world/catalog.parquet -m model --detections detections.parquet -o ray.parquet --ray --num-workers 2
    """
    import tempfile

    import pyarrow.parquet as pq

    from moon_cli.contracts import DETECTIONS
    from moon_cli.devices import choose_device
    from moon_cli.embed.encoders import load_encoder
    from moon_cli.embed.inputs import FolderInput, TableInput
    from moon_cli.embed.run import embed_to_parquet
    from moon_cli.errors import MoonError
    from moon_cli.progress import plural
    from moon_cli.io import (fingerprint, is_stdio, make_manifest, read_manifest, read_table, resolve_paths,
                             write_table)

    shard_t = _shard(shard)
    if not ray_address:  # before anything loads; on Ray each worker picks its own GPU
        device = choose_device(device)
    to_stdout, output = is_stdio(output), Path(output)
    if to_stdout and resume:
        raise MoonError("--resume needs an output file: a stream on stdout cannot be continued")
    if not to_stdout and output.exists() and not (resume or overwrite):
        raise MoonError(f"{output}: already exists; pass --resume to add missing rows or --overwrite to replace it")
    det = read_table(detections, DETECTIONS).table if detections else None
    if not is_stdio(input_path) and Path(input_path).is_dir():
        source = FolderInput(Path(input_path).resolve(), det)
        if kind == "query":
            raise MoonError("--kind query: a folder is read as product photos; give a queries Parquet instead")
    else:
        art = read_table(input_path)
        base = base_dir if (base_dir and is_stdio(input_path)) else art.base_dir
        table = resolve_paths(art.table, [c for c in ("image_paths", "query_image", "image_path")
                                          if c in art.table.column_names], base, art.source)
        source = TableInput(table, art.source, det, None if kind == "auto" else kind)
        if source.kind == "product" and "image_paths" not in table.column_names and not text_only:
            raise MoonError(f"{art.source}: has no 'image_paths' column, so its products would be embedded from "
                            f"their text alone; add the photos, or pass --text-only if that is what you want")
    if ray_address:
        from moon_cli.embed.remote import RayEncoder
        from moon_cli.ray_pool import connect

        connect(ray_address)
        encoder = RayEncoder(model_name, num_workers=num_workers, device=device, cpus_per_worker=cpus_per_worker)
    else:
        encoder = load_encoder(model_name, device)
    params = {"model": model_name, "model_id": encoder.model_id, "dim": min(dim or encoder.dim, encoder.dim),
              "kind": source.kind, "shard": shard, "detections": fingerprint(detections) if detections else None}
    manifest = make_manifest("embed", params, inputs=[p for p in (input_path, detections) if p])
    try:
        with tempfile.TemporaryDirectory(prefix="moon-embed-") as tmp:
            target = Path(tmp) / "embeddings.parquet" if to_stdout else output  # a stream is written once, at the end
            stats = embed_to_parquet(source, encoder, target, batch_size=batch_size, dim=dim, shard=shard_t,
                                     resume=resume, overwrite=overwrite, manifest=manifest, quiet=quiet)
            if to_stdout:
                table = pq.read_table(target)
                write_table(table, "-", manifest=read_manifest(table.schema))
    finally:
        encoder.close()
    summary = {"model": f"{model_name} ({encoder.model_id}), dim {params['dim']}",
               "rows": f"{stats.rows_in} in shard" if shard_t else f"{stats.rows_in + len(source.null_ids)} in",
               "embedded": f"{stats.ok} ok, {stats.errors} error(s)"
                           + (f", {stats.skipped_done} already done" if stats.skipped_done else ""),
               "time": f"{stats.seconds:.1f} s ({(stats.ok + stats.errors) / max(stats.seconds, 1e-9):.1f} "
                       f"{plural(source.kind)}/s)"}
    if ray_address:
        summary["ray"] = f"{encoder.num_workers} worker(s)" + (f", {encoder.pool.workers_lost} lost and replaced"
                                                                 if encoder.pool.workers_lost else "")
    if stats.repeated:
        ids = ", ".join(dict.fromkeys(stats.repeated[:50]))
        summary["repeated ids"] = (f"{len(stats.repeated)} row(s) repeat an id of an earlier row and were left out "
                                   f"(the first row with each id is embedded): {ids[:120]}; give each row its own id")
    if source.null_ids:
        rows = ", ".join(map(str, source.null_ids[:5])) + (", ..." if len(source.null_ids) > 5 else "")
        summary["skipped"] = f"{len(source.null_ids)} input row(s) with a null {source.id_col} (rows {rows}): give them ids"
    if stats.first_errors:
        summary["first errors"] = " | ".join(stats.first_errors)
    echo_summary(f"moon embed: wrote {'stdout' if to_stdout else output}", summary)
    if stats.errors and not stats.ok:
        hint = (" (a table piped on - resolves relative photo paths against --base-dir, default the current "
                "directory)" if is_stdio(input_path) else "")
        raise MoonError(f"every row failed ({stats.errors}); first error: {stats.first_errors[0]}{hint}")
