"""Stream items through an encoder into an embeddings Parquet, in resumable parts.

While running, finished rows are flushed to ``.OUTPUT.parts/part-NNNNN.parquet`` (each written atomically),
so a killed run loses at most one flush; ``--resume`` skips every id already in the parts or in OUTPUT.
At the end the parts are joined into OUTPUT (atomically) and removed.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from moon_cli.embed.encoders import Encoder
from moon_cli.embed.inputs import EmbedItem, in_shard
from moon_cli.errors import MoonError
from moon_cli.io import MANIFEST_KEY, atomic_file, output_lock, read_manifest
from moon_cli.progress import progress


@dataclass
class EmbedStats:
    rows_in: int = 0
    skipped_done: int = 0  # ids an earlier (interrupted) run already wrote: --resume
    repeated: list[str] = field(default_factory=list)  # ids seen before in this input (each row after the first)
    ok: int = 0
    errors: int = 0
    first_errors: list[str] = field(default_factory=list)
    seconds: float = 0.0


def parts_dir(output: Path) -> Path:
    return output.parent / f".{output.name}.parts"


def truncate(vectors: torch.Tensor, dim: int | None) -> torch.Tensor:
    """Matryoshka-style: keep the first ``dim`` components and renormalise."""
    if not dim or dim >= vectors.shape[-1]:
        return vectors
    return torch.nn.functional.normalize(vectors[:, :dim], dim=-1)


def model_of(path: Path) -> dict:
    return read_manifest(pq.read_schema(path)).get("params", {})


# the manifest parameters that shape the rows: --resume refuses to mix rows made with other values
SHAPING = ("model_id", "dim", "kind", "detections")


def _done_ids(paths: list[Path], manifest: dict) -> set[str]:
    done: set[str] = set()
    want = manifest["params"]
    for p in paths:
        have = model_of(p)
        for key in SHAPING:
            if have.get(key) != want.get(key):
                raise MoonError(f"{p}: was embedded with {key} {have.get(key)!r}, this run has {want.get(key)!r}; "
                                f"--resume needs the same settings (use --overwrite to start over)")
        done.update(pq.read_table(p, columns=["id"]).column("id").to_pylist())
    return done


def _record_batch(items: list[EmbedItem], enc, dim: int, source) -> tuple[pa.Table, int]:
    n = len(items)
    vecs = np.zeros((n, dim), dtype=np.float32)
    status, error = ["ok"] * n, [None] * n
    if enc.ok:
        vecs[enc.ok] = enc.vectors.numpy()
    for i, msg in enc.errors.items():
        status[i], error[i] = "error", msg
    flat = pa.array(vecs.reshape(-1), pa.float32())
    vector = pa.FixedSizeListArray.from_arrays(flat, dim)
    valid = pa.array([s == "ok" for s in status])
    vector = pa.compute.if_else(valid, vector, pa.nulls(n, vector.type))  # failed rows: null vector
    table = pa.table({"id": pa.array([it.id for it in items], pa.string()), "vector": vector,
                      "status": pa.array(status, pa.string()), "error": pa.array(error, pa.string())})
    extra = source.passthrough(items)
    for name in extra.column_names:
        table = table.append_column(name, extra.column(name))
    return table, len(enc.errors)


def embed_to_parquet(source, encoder: Encoder, output: Path, **kwargs) -> EmbedStats:
    """Embed every item of ``source`` into ``output``; the whole run holds the output's lock (its parts
    directory is shared by nothing else), so a second writer to the same output is refused at once."""
    with output_lock(output):
        return _embed_to_parquet(source, encoder, output, **kwargs)


def _embed_to_parquet(source, encoder: Encoder, output: Path, *, batch_size: int = 16, dim: int | None = None,
                      shard: tuple[int, int] | None = None, resume: bool = False, overwrite: bool = False,
                      manifest: dict, flush_rows: int = 256, quiet: bool = False) -> EmbedStats:
    stats = EmbedStats()
    started = time.perf_counter()
    out_dim = min(dim, encoder.dim) if dim else encoder.dim
    parts = parts_dir(output)
    previous: list[Path] = []
    if output.exists():
        if not (resume or overwrite):
            raise MoonError(f"{output}: already exists; pass --resume to add missing rows or --overwrite to replace it")
        if resume:
            previous.append(output)
    if parts.exists():
        if resume:
            previous += sorted(parts.glob("part-*.parquet"))
        else:
            shutil.rmtree(parts)
    done = _done_ids(previous, manifest) if previous else set()
    parts.mkdir(parents=True, exist_ok=True)
    next_part = len(list(parts.glob("part-*.parquet")))
    buffer: list[pa.Table] = []

    def flush() -> None:
        nonlocal next_part, buffer
        if not buffer:
            return
        table = pa.concat_tables(buffer)
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               MANIFEST_KEY: json.dumps(manifest).encode()})
        with atomic_file(parts / f"part-{next_part:05d}.parquet") as tmp:
            pq.write_table(table, tmp)
        next_part += 1
        buffer = []

    bar = progress(total=len(source), desc="moon embed", unit=source.kind, quiet=quiet)

    def batches() -> Iterator[list[EmbedItem]]:
        """The input's items still to embed (this shard, not already done), ``batch_size`` at a time."""
        pending: list[EmbedItem] = []
        seen: set[str] = set()
        for item in source.items():
            if not in_shard(item.id, shard):
                bar.update(1)
                continue
            stats.rows_in += 1
            if item.id in done:
                stats.skipped_done += 1
                bar.update(1)
                continue
            if item.id in seen:  # one id, one vector: the first row with it is embedded, the others counted
                stats.repeated.append(item.id)
                bar.update(1)
                continue
            seen.add(item.id)
            pending.append(item)
            if len(pending) >= batch_size:
                yield pending
                pending = []
        if pending:
            yield pending

    buffered = 0
    for batch, enc in encoder.encode_batches(batches(), source.kind):
        enc.vectors = truncate(enc.vectors, out_dim)
        table, n_err = _record_batch(batch, enc, out_dim, source)
        stats.ok += len(batch) - n_err
        stats.errors += n_err
        stats.first_errors += list(enc.errors.values())[: max(0, 3 - len(stats.first_errors))]
        buffer.append(table)
        buffered += len(batch)
        bar.update(len(batch))
        if buffered >= flush_rows:
            flush()
            buffered = 0
    flush()
    bar.close()
    _join(output, previous, sorted(parts.glob("part-*.parquet")), manifest, out_dim)
    shutil.rmtree(parts, ignore_errors=True)
    stats.seconds = time.perf_counter() - started
    return stats


def _join(output: Path, previous: list[Path], part_files: list[Path], manifest: dict, dim: int) -> None:
    """Write OUTPUT = what it held before + every part, in order, atomically."""
    files = ([output] if output in previous else []) + part_files
    tables = [pq.read_table(p) for p in files]
    if tables:
        table = pa.concat_tables(tables, promote_options="permissive")
    else:  # nothing to embed (an empty input or an empty shard): an empty, well-typed table
        table = pa.table({"id": pa.array([], pa.string()), "vector": pa.array([], pa.list_(pa.float32(), dim)),
                          "status": pa.array([], pa.string()), "error": pa.array([], pa.string())})
    table = table.replace_schema_metadata({MANIFEST_KEY: json.dumps(manifest).encode()})
    with atomic_file(output) as tmp:
        pq.write_table(table, tmp)
