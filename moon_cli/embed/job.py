"""One `moon embed` job: open the input (a folder of photos, a table, or a stream), load the encoder (here or on
Ray), write the embeddings (a stream is written once, at the end), and say what happened."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from moon_cli.errors import MoonError


@dataclass
class EmbedJob:
    input_path: str  # a folder, a Parquet file, or - (an Arrow stream)
    model: str
    output: str  # a Parquet file, or - (an Arrow stream on stdout)
    detections: str | None = None
    kind: str = "auto"  # auto | product | query
    batch_size: int = 16
    dim: int | None = None
    shard: tuple[int, int] | None = None  # (I, N)
    resume: bool = False
    device: str | None = None
    base_dir: Path | None = None  # where a stream's relative photo paths lie
    text_only: bool = False
    ray_address: str | None = None
    num_workers: int | None = None
    cpus_per_worker: int = 1
    overwrite: bool = False
    quiet: bool = False


@dataclass
class EmbedResult:
    summary: dict[str, str]  # the closing summary's rows
    failure: str | None  # set when every row failed: the run wrote its rows, but the exit code must say so


def open_input(job: EmbedJob, detections):
    """The rows to embed; refuses a table that would silently embed products from their text alone."""
    from moon_cli.embed.inputs import FolderInput, TableInput
    from moon_cli.io import is_stdio, read_table, resolve_paths

    if not is_stdio(job.input_path) and Path(job.input_path).is_dir():
        if job.kind == "query":
            raise MoonError("--kind query: a folder is read as product photos; give a queries Parquet instead")
        return FolderInput(Path(job.input_path).resolve(), detections)
    art = read_table(job.input_path)
    base = job.base_dir if (job.base_dir and is_stdio(job.input_path)) else art.base_dir
    table = resolve_paths(art.table, [c for c in ("image_paths", "query_image", "image_path")
                                      if c in art.table.column_names], base, art.source)
    source = TableInput(table, art.source, detections, None if job.kind == "auto" else job.kind)
    if source.kind == "product" and "image_paths" not in table.column_names and not job.text_only:
        raise MoonError(f"{art.source}: has no 'image_paths' column, so its products would be embedded from "
                        f"their text alone; add the photos, or pass --text-only if that is what you want")
    return source


def _encoder(job: EmbedJob):
    if job.ray_address:
        from moon_cli.embed.remote import RayEncoder
        from moon_cli.ray_pool import connect

        connect(job.ray_address)
        return RayEncoder(job.model, num_workers=job.num_workers, device=job.device,
                          cpus_per_worker=job.cpus_per_worker)
    from moon_cli.embed.encoders import load_encoder

    return load_encoder(job.model, job.device)


def run_embed(job: EmbedJob) -> EmbedResult:
    import pyarrow.parquet as pq

    from moon_cli.contracts import DETECTIONS
    from moon_cli.devices import choose_device
    from moon_cli.embed.run import embed_to_parquet
    from moon_cli.io import fingerprint, is_stdio, make_manifest, read_manifest, read_table, write_table

    if not job.ray_address:  # before anything loads; on Ray each worker picks its own GPU
        job.device = choose_device(job.device)
    to_stdout, output = is_stdio(job.output), Path(job.output)
    if to_stdout and job.resume:
        raise MoonError("--resume needs an output file: a stream on stdout cannot be continued")
    if not to_stdout and output.exists() and not (job.resume or job.overwrite):
        raise MoonError(f"{output}: already exists; pass --resume to add missing rows or --overwrite to replace it")
    det = read_table(job.detections, DETECTIONS).table if job.detections else None
    source = open_input(job, det)
    encoder = _encoder(job)
    shard = f"{job.shard[0]}/{job.shard[1]}" if job.shard else None
    params = {"model": job.model, "model_id": encoder.model_id, "dim": min(job.dim or encoder.dim, encoder.dim),
              "kind": source.kind, "shard": shard,
              "detections": fingerprint(job.detections) if job.detections else None}
    manifest = make_manifest("embed", params, inputs=[p for p in (job.input_path, job.detections) if p])
    try:
        with tempfile.TemporaryDirectory(prefix="moon-embed-") as tmp:
            target = Path(tmp) / "embeddings.parquet" if to_stdout else output  # a stream is written once, at the end
            stats = embed_to_parquet(source, encoder, target, batch_size=job.batch_size, dim=job.dim, shard=job.shard,
                                     resume=job.resume, overwrite=job.overwrite, manifest=manifest, quiet=job.quiet)
            if to_stdout:
                table = pq.read_table(target)
                write_table(table, "-", manifest=read_manifest(table.schema))
    finally:
        encoder.close()
    return EmbedResult(_summary(job, params, encoder, source, stats), _failure(job, stats))


def _summary(job: EmbedJob, params: dict, encoder, source, stats) -> dict[str, str]:
    from moon_cli.progress import plural

    summary = {"model": f"{job.model} ({encoder.model_id}), dim {params['dim']}",
               "rows": f"{stats.rows_in} in shard" if job.shard else f"{stats.rows_in + len(source.null_ids)} in",
               "embedded": f"{stats.ok} ok, {stats.errors} error(s)"
                           + (f", {stats.skipped_done} already done" if stats.skipped_done else ""),
               "time": f"{stats.seconds:.1f} s ({(stats.ok + stats.errors) / max(stats.seconds, 1e-9):.1f} "
                       f"{plural(source.kind)}/s)"}
    if job.ray_address:
        summary["ray"] = f"{encoder.num_workers} worker(s)" + (f", {encoder.pool.workers_lost} lost and replaced"
                                                                 if encoder.pool.workers_lost else "")
    if stats.repeated:
        ids = ", ".join(dict.fromkeys(stats.repeated[:50]))
        summary["repeated ids"] = (f"{len(stats.repeated)} row(s) repeat an id of an earlier row and were left out "
                                   f"(the first row with each id is embedded): {ids[:120]}; give each row its own id")
    if source.null_ids:
        rows = ", ".join(map(str, source.null_ids[:5])) + (", ..." if len(source.null_ids) > 5 else "")
        summary["skipped"] = (f"{len(source.null_ids)} input row(s) with a null {source.id_col} (rows {rows}): "
                              f"give them ids")
    if stats.first_errors:
        summary["first errors"] = " | ".join(stats.first_errors)
    return summary


def _failure(job: EmbedJob, stats) -> str | None:
    from moon_cli.io import is_stdio

    if not stats.errors or stats.ok:
        return None
    hint = (" (a table piped on - resolves relative photo paths against --base-dir, default the current directory)"
            if is_stdio(job.input_path) else "")
    return f"every row failed ({stats.errors}); first error: {stats.first_errors[0]}{hint}"
