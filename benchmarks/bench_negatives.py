"""Benchmark: `sample-negatives --strategy embedding` on 200 k products × 100 k pairs (random unit vectors).

    python benchmarks/bench_negatives.py [--products 200000] [--pairs 100000] [--dim 256]
Reports wall time and peak RSS (the sentence-transformers `mine_hard_negatives` comparison is still to do).
"""

import argparse
import resource
import time

import numpy as np
import pyarrow as pa

from moon_cli.data.negatives import sample_negatives


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--products", type=int, default=200_000)
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--per-pair", type=int, default=8)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    ids = [f"p{i}" for i in range(args.products)]
    catalog = pa.table({"item_id": ids, "category_path": [["a", f"b{i % 50}", f"c{i % 500}"] for i in range(args.products)]})
    vecs = rng.normal(size=(args.products, args.dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    emb = pa.table({"id": ids, "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), args.dim)})
    pos = rng.integers(0, args.products, args.pairs)
    pairs = pa.table({"pair_id": [f"q{i}" for i in range(args.pairs)], "item_id": [ids[i] for i in pos],
                      "query_text": [f"query {i}" for i in range(args.pairs)], "query_image": [None] * args.pairs})
    start = time.perf_counter()
    table, stats = sample_negatives(pairs, catalog, args.per_pair, "embedding", 0, emb, 0.05)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    inputs_mb = vecs.nbytes / 2 ** 20
    print(f"sample-negatives embedding: {args.pairs:,} pairs x {args.products:,} products x {args.dim} dims, "
          f"K={args.per_pair}: {seconds:.1f} s, peak RSS {peak:.0f} MB (vectors alone: {inputs_mb:.0f} MB); "
          f"{table.num_rows} rows, {stats.short} short")


if __name__ == "__main__":
    main()
