"""Benchmark: tiny MoonModel products/s and queries/s on CPU beside the matrix-multiply roofline.

The roofline rate is (measured fp32 matmul FLOP/s) / (model FLOPs per item), with FLOPs counted by
torch's FlopCounterMode on the real forward pass; the ratio measured / roofline is the figure of merit.

    python benchmarks/bench_model.py WORLD_DIR [--threads 2] [--preset tiny]
"""

import argparse
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from moon_cli.contracts import BOXES, CATALOG
from moon_cli.io import read_table
from moon_cli.model import MoonModel


def matmul_flops_per_second(n: int = 1024, repeats: int = 20) -> float:
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * n ** 3 * repeats / (time.perf_counter() - start)


def load_items(world):
    boxes = {r["image_path"]: r["bbox"] for r in read_table(f"{world}/boxes.parquet", BOXES).table.to_pylist()}
    rows = read_table(f"{world}/catalog.parquet", CATALOG).table.to_pylist()
    products = [dict(item_id=r["item_id"], title=r["title"], category_path=r["category_path"],
                     attributes=r["attributes"], images=r["image_paths"], bboxes=[boxes[p] for p in r["image_paths"]])
                for r in rows]
    queries = [{"text": r["title"].lower(), "image": r["image_paths"][0]} for r in rows]
    return products, queries


def measure(model, items, encode_seq, batch_size: int, n_items: int):
    items = (items * (n_items // len(items) + 1))[:n_items]
    seqs_all = [encode_seq(x) for x in items[: batch_size]]
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(model.processor.collate(seqs_all))
    flops_per_item = counter.get_total_flops() / len(seqs_all)
    tokens_per_item = sum(len(s.ids) for s in seqs_all) / len(seqs_all)
    start = time.perf_counter()
    for i in range(0, n_items, batch_size):
        model.embed_sequences([encode_seq(x) for x in items[i:i + batch_size]])
    elapsed = time.perf_counter() - start
    return n_items / elapsed, flops_per_item, tokens_per_item


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("world")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--preset", default="tiny")
    ap.add_argument("--items", type=int, default=96)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    model = MoonModel.from_preset(args.preset).eval()
    products, queries = load_items(args.world)
    peak = matmul_flops_per_second()
    print(f"model: {args.preset}, {model.num_parameters() / 1e6:.1f} M parameters; threads: {args.threads}; "
          f"measured fp32 matmul: {peak / 1e9:.1f} GFLOP/s")
    print("| kind | batch | tokens/item | GFLOP/item | items/s | roofline items/s | ratio |")
    print("|---|---|---|---|---|---|---|")
    for kind, items, enc in (("product", products, model.processor.encode_product),
                             ("query", queries, model.processor.encode_query)):
        for bs in (1, 8, 32):
            rate, flops, tokens = measure(model, items, enc, bs, args.items)
            roof = peak / flops
            print(f"| {kind} | {bs} | {tokens:.0f} | {flops / 1e9:.3f} | {rate:.1f} | {roof:.1f} | {rate / roof:.2f} |")


if __name__ == "__main__":
    main()
