"""Benchmark: every search path side by side in one run — recall@10 and ms per query, one at a time and
as one batch — for `moon index` + moon's two search paths, LanceDB's own floor, FAISS directly and exact
numpy.

Vectors: N × D unit vectors drawn around N/100 random centres (product embeddings cluster by category and
family; uniformly random vectors would be the worst case of any ANN index and unlike real embeddings).
Queries: fresh vectors from the same distribution (not stored rows). Ground truth: exact cosine top-10.
FAISS and numpy search on one thread (OMP / BLAS); LanceDB uses its own runtime.

    python benchmarks/bench_search.py [--rows 200000 1000000] [--dim 256] [--queries 200]
"""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before numpy / faiss load: one thread each, as the goals say
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pyarrow as pa  # noqa: E402

from moon_cli.index.lance import SearchSettings, build_index, search_vectors  # noqa: E402
from moon_cli.index.searcher import Searcher  # noqa: E402


def clustered(rng, n: int, dim: int, centres: np.ndarray, spread: float = 0.35) -> np.ndarray:
    v = centres[rng.integers(0, len(centres), n)] + spread * rng.normal(size=(n, dim)).astype(np.float32) / dim ** 0.5
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


def vector_table(vectors: np.ndarray) -> pa.Table:
    n, dim = vectors.shape
    return pa.table({"id": pa.array([f"p{i:07d}" for i in range(n)]),
                     "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim)})


def timed(fn, queries: np.ndarray) -> tuple[list[list[int]], float, float]:
    """fn(queries (m, D)) -> rows per query. Returns (rows from the batched call, ms/query single, ms batch)."""
    fn(queries[:2])  # warm-up
    t0 = time.perf_counter()
    for q in queries:
        fn(q[None])
    t1 = time.perf_counter()
    rows = fn(queries)
    t2 = time.perf_counter()
    return rows, 1000 * (t1 - t0) / len(queries), 1000 * (t2 - t1)


def recall(rows: list[list[int]], truth: np.ndarray) -> float:
    return float(np.mean([len(set(r[:10]) & set(t.tolist())) / 10 for r, t in zip(rows, truth)]))


def run(rows_n: int, dim: int, n_queries: int, out: list[str]) -> None:
    import faiss

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(max(1, rows_n // 100), dim)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    vectors = np.concatenate([clustered(rng, min(100_000, rows_n - s), dim, centres) for s in range(0, rows_n, 100_000)])
    queries = clustered(rng, n_queries, dim, centres)
    truth = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]  # (Q, 10) exact
    row_of = lambda ids: [int(x[1:]) for x in ids]  # noqa: E731 - "p0000042" -> 42
    results = []  # (path, recall, single ms, batch ms, build s)
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        report = build_index(vector_table(vectors), Path(tmp) / "index", {"model": "bench", "model_id": "bench", "dim": dim})
        build_s = time.perf_counter() - t0
        lance_path = Searcher(Path(tmp) / "index")
        fn = lambda q: [row_of(h["id"] for h in hits) for hits in lance_path.search(q, 10, columns=[])]  # noqa: E731
        results.append((f"moon, LanceDB path ({report.settings.describe()})", *timed(fn, queries), build_s))
        t0 = time.perf_counter()
        memory_path = Searcher(Path(tmp) / "index", memory="on")
        load_s = time.perf_counter() - t0
        fn = lambda q: [row_of(h["id"] for h in hits) for hits in memory_path.search(q, 10, columns=[])]  # noqa: E731
        results.append((f"moon, in-memory path ({memory_path.describe()})", *timed(fn, queries), load_s))

        # LanceDB's fixed per-query cost: a 1,000-row flat table, id only
        small = vector_table(vectors[:1000])
        import lancedb

        table = lancedb.connect(str(Path(tmp) / "floor")).create_table("items", small)
        fn = lambda q: [row_of(t.column("id").to_pylist()) for t in search_vectors(table, q, 10, SearchSettings("flat"), ["id"])]  # noqa: E731
        timed_floor = timed(fn, queries)
        results.append(("LanceDB floor (1,000-row flat table, id only; recall vs its own rows)", None, *timed_floor[1:], 0.0))

    t0 = time.perf_counter()
    faiss.omp_set_num_threads(2)  # build time is not what is compared; search runs on one thread
    hnsw = faiss.IndexHNSWFlat(dim, 32, faiss.METRIC_INNER_PRODUCT)
    hnsw.add(vectors)
    faiss.omp_set_num_threads(1)
    hnsw_s = time.perf_counter() - t0
    for ef in (16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512):
        hnsw.hnsw.efSearch = ef
        got = hnsw.search(queries, 10)[1]
        if recall(got.tolist(), truth) >= 0.95:
            break
    results.append((f"FAISS IndexHNSWFlat (M 32, efSearch {ef})", *timed(lambda q: hnsw.search(q, 10)[1].tolist(), queries), hnsw_s))
    t0 = time.perf_counter()
    nlist = int(np.sqrt(rows_n))
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, nlist, faiss.METRIC_INNER_PRODUCT)
    ivf.train(vectors[rng.choice(rows_n, size=min(rows_n, 64 * nlist), replace=False)])
    ivf.add(vectors)
    ivf_s = time.perf_counter() - t0
    for nprobe in (1, 2, 4, 8, 16, 32):
        ivf.nprobe = nprobe
        if recall(ivf.search(queries, 10)[1].tolist(), truth) >= 0.95:
            break
    results.append((f"FAISS IndexIVFFlat (nlist {nlist}, nprobe {nprobe})", *timed(lambda q: ivf.search(q, 10)[1].tolist(), queries), ivf_s))

    def exact(q):
        scores = q @ vectors.T  # (m, N)
        top = np.argpartition(-scores, 9, axis=1)[:, :10]
        return np.take_along_axis(top, np.argsort(-np.take_along_axis(scores, top, 1), 1), 1).tolist()

    results.append(("exact numpy (matrix product + argpartition)", *timed(exact, queries), 0.0))

    out.append(f"\n{rows_n:,} × {dim} clustered unit vectors, {n_queries} fresh queries, k 10\n")
    out.append("| search path | recall@10 | ms / query, one at a time | ms for all queries as one batch | build / load (s) |")
    out.append("|---|---|---|---|---|")
    by = {}
    for name, rows, single, batch, build in results:
        r = "—" if rows is None else f"{recall(rows, truth):.3f}"
        by[name.split(" (")[0]] = (single, batch, None if rows is None else recall(rows, truth))
        out.append(f"| {name} | {r} | {single:.2f} | {batch:.1f} | {build:.1f} |")
    mem, lance_p = by["moon, in-memory path"], by["moon, LanceDB path"]
    f_hnsw, f_ivf, fl = by["FAISS IndexHNSWFlat"], by["FAISS IndexIVFFlat"], by["LanceDB floor"]
    best_batch = min(f_hnsw[1], f_ivf[1])
    out.append("")
    out.append(f"- in-memory single query / FAISS HNSW: {mem[0] / f_hnsw[0]:.2f}× (goal ≤ 2×)")
    out.append(f"- LanceDB path single query / LanceDB floor: {lance_p[0] / fl[0]:.2f}× (goal ≤ 1.2×)")
    out.append(f"- in-memory batch / FAISS's faster batch: {mem[1] / best_batch:.2f}×; "
               f"LanceDB-path batch / FAISS: {lance_p[1] / best_batch:.2f}× (goal ≤ 2×)")
    recalls = [v[2] for v in by.values() if v[2] is not None]
    out.append(f"- lowest recall@10 of any path: {min(recalls):.3f} (goal ≥ 0.95)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, nargs="+", default=[200_000, 1_000_000])
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--queries", type=int, default=200)
    args = ap.parse_args()
    for n in args.rows:
        out: list[str] = []
        run(n, args.dim, args.queries, out)
        print("\n".join(out), flush=True)


if __name__ == "__main__":
    main()
