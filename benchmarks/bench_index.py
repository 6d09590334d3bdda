"""Benchmark: `moon index`'s peak memory and wall time against the row count, side by side in one run.

    python benchmarks/bench_index.py [--rows 250000,1000000] [--dim 384] [--shards 4] [--ref COMMIT] [--faiss]

For each row count, clustered unit vectors (like real embeddings: 1 centre per 100 rows) are written as
`moon embed --shard I/N`-style shard files, a chunk at a time, and indexed by a glob in a fresh process whose
peak RSS is read from /usr/bin/time. ``--ref`` also runs an earlier commit's `moon index` on the same files (a
temporary git worktree, this interpreter); ``--faiss`` times FAISS IVF (k-means + add, in memory, same threads) on
the same vectors. `make bench-index` runs it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from moon_cli.io import MANIFEST_KEY, make_manifest  # noqa: E402

CHUNK = 50_000


def clustered(rng, n: int, dim: int, centres: np.ndarray, spread: float = 0.35) -> np.ndarray:
    v = centres[rng.integers(0, len(centres), n)] + spread * rng.normal(size=(n, dim)).astype(np.float32) / dim ** 0.5
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def write_shards(folder: Path, rows: int, dim: int, shards: int) -> None:
    """``shards`` Parquet files of `moon embed`'s shape, written a chunk at a time (the generator holds one)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(max(1, rows // 100), dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    manifest = make_manifest("embed", {"model": "bench", "model_id": "bench", "dim": dim})
    schema = pa.schema([("id", pa.string()), ("vector", pa.list_(pa.float32(), dim)), ("status", pa.string()),
                        ("error", pa.string())], metadata={MANIFEST_KEY: json.dumps(manifest)})
    per = -(-rows // shards)
    for s in range(shards):
        lo, hi = s * per, min(rows, (s + 1) * per)
        with pq.ParquetWriter(folder / f"emb-{s:03d}-of-{shards:03d}.parquet", schema) as writer:
            for start in range(lo, hi, CHUNK):
                n = min(CHUNK, hi - start)
                v = clustered(rng, n, dim, centres)
                writer.write_table(pa.table({"id": [f"p{i:09d}" for i in range(start, start + n)],
                                             "vector": pa.FixedSizeListArray.from_arrays(pa.array(v.ravel()), dim),
                                             "status": ["ok"] * n, "error": pa.nulls(n, pa.string())}, schema=schema))


def moon_index(folder: Path, out: Path, pythonpath: str | None = None) -> dict:
    """One `moon index` of the folder's shards in a fresh process: peak RSS, wall time and its summary."""
    env = dict(os.environ, **({"PYTHONPATH": pythonpath} if pythonpath else {}))
    cmd = ["/usr/bin/time", "-f", "PEAK_KB %M", sys.executable, "-m", "moon_cli.cli", "index",
           *sorted(str(p) for p in folder.glob("emb-*.parquet")), "-o", str(out), "--overwrite"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"moon index failed: {r.stderr.strip().splitlines()[-2:]}")
    summary = {k.strip(): v.strip() for k, v in re.findall(r"^\s{2}(\w[\w@ ]*?)\s{2,}(.+)$", r.stderr, re.M)}
    peak = int(re.search(r"PEAK_KB (\d+)", r.stderr).group(1)) / 1024
    return {"peak_mb": peak, "wall_s": wall, **summary}


def faiss_ivf(folder: Path, dim: int) -> float:
    """Seconds for FAISS IVF (sqrt(N)·2 lists, flat) to train and add the same vectors, in memory."""
    import faiss

    v = np.concatenate([np.stack(t.column("vector").to_numpy(zero_copy_only=False))
                        for t in (pq.read_table(p, columns=["vector"]) for p in sorted(folder.glob("emb-*.parquet")))])
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    lists = max(1, int(2 * np.sqrt(len(v))))
    t0 = time.perf_counter()
    index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
    index.train(v[np.random.default_rng(0).choice(len(v), min(len(v), lists * 64), replace=False)])
    index.add(v)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", default="250000,1000000")
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--ref", default=None, help="an earlier commit whose `moon index` runs on the same files")
    ap.add_argument("--faiss", action="store_true", help="also time FAISS IVF on the same vectors")
    ap.add_argument("--dir", type=Path, default=REPO / "runs" / "bench-index")
    args = ap.parse_args()
    sizes = [int(x) for x in args.rows.split(",")]
    old = None
    if args.ref:
        old = Path(tempfile.mkdtemp(prefix="moon-ref-")) / "tree"
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-q", str(old), args.ref], check=True)
    lines = [f"# `moon index` against the row count (dim {args.dim}, {args.shards} shards, clustered vectors, "
             f"{os.cpu_count()} cores)", "",
             "| rows | code | peak RSS | wall | index | recall@10 | latency |", "|---|---|---|---|---|---|---|"]
    peaks: dict[str, list[float]] = {}
    try:
        for rows in sizes:
            folder = args.dir / f"rows-{rows}"
            if not (folder / "done").exists():
                write_shards(folder, rows, args.dim, args.shards)
                (folder / "done").touch()
            runs = [("this tree", None)] + ([(args.ref, str(old))] if old else [])
            for label, path in runs:
                got = moon_index(folder, args.dir / f"idx-{rows}", path)
                peaks.setdefault(label, []).append(got["peak_mb"])
                lines.append(f"| {rows:,} | {label} | {got['peak_mb']:,.0f} MB | {got['wall_s']:.0f} s | "
                             f"{got.get('index', '?')} | {got.get('recall@10', '?').split(' ')[0]} | "
                             f"{got.get('latency', '?')} |")
                print(lines[-1], flush=True)
            if args.faiss:
                build = faiss_ivf(folder, args.dim)
                lines.append(f"| {rows:,} | FAISS IVF, in memory | | {build:.0f} s (build) | | | |")
                print(lines[-1], flush=True)
    finally:
        if old:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], check=False)
    lines.append("")
    for label, p in peaks.items():
        if len(p) > 1:
            lines.append(f"- {label}: peak RSS at {sizes[-1]:,} rows = {p[-1] / p[0]:.2f}× its peak at {sizes[0]:,}")
    report = "\n".join(lines) + "\n"
    (args.dir / "report.md").write_text(report)
    print(report)


if __name__ == "__main__":
    main()
