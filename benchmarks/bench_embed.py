"""Benchmark: `moon embed` products/s beside a straightforward per-item loop on the same model, and beside
the matrix-multiply roofline.

Both paths embed the same catalogue rows with the same (tiny, random-init) MoonModel:
  per-item loop   for each product: load + preprocess its images, one forward pass, mean pool
  moon embed      the stage's own code path (TableInput → MoonEncoder → Parquet parts), batch --batch-size
The roofline is (measured fp32 matmul FLOP/s) / (forward FLOPs per product, counted by FlopCounterMode).

    python benchmarks/bench_embed.py WORLD_DIR [--items 300] [--threads 2] [--batch-size 16]
"""

import argparse
import tempfile
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench_model import matmul_flops_per_second
from moon_cli.contracts import CATALOG
from moon_cli.data.products import product_records
from moon_cli.embed.encoders import load_encoder
from moon_cli.embed.inputs import TableInput
from moon_cli.embed.run import embed_to_parquet
from moon_cli.io import make_manifest, read_table


def per_item_loop(model, products) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for product in products:
            batch = model.processor.collate([model.processor.encode_product(product)])
            model(batch).embeddings.cpu()
    return len(products) / (time.perf_counter() - start)


def moon_embed(encoder, table, source: str, batch_size: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "e.parquet"
        manifest = make_manifest("embed", {"model": "tiny", "model_id": encoder.model_id, "dim": encoder.dim,
                                           "kind": "product", "shard": None}, inputs=[])
        start = time.perf_counter()
        stats = embed_to_parquet(TableInput(table, source, None, "product"), encoder, out, batch_size=batch_size,
                                 manifest=manifest, quiet=True)
        elapsed = time.perf_counter() - start
    assert stats.ok == table.num_rows, stats
    return table.num_rows / elapsed


def flops_per_product(model, products) -> float:
    seqs = [model.processor.encode_product(p) for p in products[:16]]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(model.processor.collate(seqs))
    return counter.get_total_flops() / len(seqs)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("world")
    ap.add_argument("--items", type=int, default=300)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    source = f"{args.world}/catalog.parquet"
    table = read_table(source, CATALOG).table.slice(0, args.items)
    encoder = load_encoder("tiny", "cpu")
    model = encoder.model
    products = product_records(table)
    per_item_loop(model, products[:8])  # warm-up
    loop_rate = per_item_loop(model, products)
    embed_rate = moon_embed(encoder, table, source, args.batch_size)
    peak = matmul_flops_per_second()
    roof = peak / flops_per_product(model, products)
    print(f"{table.num_rows} products, tiny model ({model.config.input.max_images} photo(s) + crop per product), "
          f"{args.threads} threads, fp32 matmul {peak / 1e9:.1f} GFLOP/s")
    print("| path | products/s | vs per-item loop | share of roofline |")
    print("|---|---|---|---|")
    print(f"| per-item transformers loop | {loop_rate:.1f} | 1.00× | {loop_rate / roof:.2f} |")
    print(f"| moon embed (batch {args.batch_size}) | {embed_rate:.1f} | {embed_rate / loop_rate:.2f}× | "
          f"{embed_rate / roof:.2f} |")
    print(f"| matmul roofline | {roof:.1f} | {roof / loop_rate:.2f}× | 1.00 |")


if __name__ == "__main__":
    main()
