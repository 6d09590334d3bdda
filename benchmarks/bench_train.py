"""Benchmark: `moon train` step memory (GradCache vs plain, by batch size) and training throughput beside
the matrix-multiply roofline.

Each memory configuration runs one training step in its own process; the figure is the step's peak
resident memory above what the process held before the step (model, data, optimiser).

    python benchmarks/bench_train.py PAIRS CATALOG [--threads 2]
"""

import argparse
import json
import resource
import subprocess
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from bench_model import matmul_flops_per_second  # noqa: E402

from moon_cli.contracts import CATALOG, PAIRS  # noqa: E402
from moon_cli.io import read_table  # noqa: E402
from moon_cli.model import MoonModel  # noqa: E402
from moon_cli.train.data import BatchBuilder, MixSampler, build_posttrain_data  # noqa: E402
from moon_cli.train.dist import DistInfo  # noqa: E402
from moon_cli.train.step import ContrastiveStep, StepOptions  # noqa: E402


def setup(pairs, catalog, batch):
    data = build_posttrain_data(read_table(pairs, PAIRS).table, read_table(catalog, CATALOG).table, None, None,
                                0.0, 0, seed=0)
    model = MoonModel.from_preset("tiny", seed=0)
    for p in model.parameters():
        p.requires_grad = True
    sampler = MixSampler(data.by_modality(), {"image": 12, "text": 3, "multimodal": 2}, seed=0, rank=0)
    builder = BatchBuilder(data, model.processor, sampler, batch, 0, seed=0, rank=0)
    return model, builder


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def one_step(args) -> dict:
    torch.set_num_threads(args.threads)
    model, builder = setup(args.pairs, args.catalog, args.batch)
    batch = builder.build(0)
    scale = torch.nn.Parameter(torch.tensor(20.0))
    step = ContrastiveStep(model, scale, StepOptions(grad_cache=args.grad_cache, chunk_size=8, queue=False),
                           DistInfo(), None)
    before = rss_mb()
    t0 = time.perf_counter()
    step(batch)
    return {"batch": args.batch, "grad_cache": args.grad_cache, "step_peak_mb": rss_mb() - before,
            "seconds": time.perf_counter() - t0}


def throughput(args, batch=16, steps=4) -> dict:
    torch.set_num_threads(args.threads)
    model, builder = setup(args.pairs, args.catalog, batch)
    scale = torch.nn.Parameter(torch.tensor(20.0))
    step = ContrastiveStep(model, scale, StepOptions(queue=False), DistInfo(), None)
    with FlopCounterMode(display=False) as counter:
        step(builder.build(0))
    flops_per_sample = counter.get_total_flops() / batch
    start = time.perf_counter()
    for s in range(1, steps + 1):
        model.zero_grad(set_to_none=True)
        step(builder.build(s))
    rate = batch * steps / (time.perf_counter() - start)
    peak = matmul_flops_per_second()
    return {"samples_per_s": rate, "gflop_per_sample": flops_per_sample / 1e9, "matmul_gflops": peak / 1e9,
            "roofline_samples_per_s": peak / flops_per_sample}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("pairs")
    ap.add_argument("catalog")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch", type=int, default=None, help="(internal) run one step at this batch size")
    ap.add_argument("--grad-cache", action="store_true")
    ap.add_argument("--sizes", default="32,512")
    args = ap.parse_args()
    if args.batch is not None:
        print(json.dumps(one_step(args)))
        return
    print("| step | batch | peak memory above baseline | step time |")
    print("|---|---|---|---|")
    sizes = [int(s) for s in args.sizes.split(",")]
    for gc in (True, False):
        for b in sizes if gc else sizes[:1] + [min(sizes[-1], 128)]:
            cmd = [sys.executable, __file__, args.pairs, args.catalog, "--batch", str(b), "--threads",
                   str(args.threads)]
            out = json.loads(subprocess.run(cmd + (["--grad-cache"] if gc else []), capture_output=True, text=True,
                                            check=True).stdout.splitlines()[-1])
            print(f"| {'GradCache (chunk 8)' if gc else 'plain'} | {b} | {out['step_peak_mb']:.0f} MB | "
                  f"{out['seconds']:.1f} s |",
                  flush=True)
    t = throughput(args)
    print(f"\ntraining throughput (plain step, batch 16, no hard negatives): {t['samples_per_s']:.1f} samples/s; "
          f"{t['gflop_per_sample']:.2f} GFLOP per sample (forward + backward, FlopCounterMode); matmul "
          f"{t['matmul_gflops']:.0f} GFLOP/s → roofline {t['roofline_samples_per_s']:.1f} samples/s; "
          f"ratio {t['samples_per_s'] / t['roofline_samples_per_s']:.2f}")


if __name__ == "__main__":
    main()
