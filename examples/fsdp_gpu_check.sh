#!/usr/bin/env bash
# What the CPU tests of `moon train --fsdp` cannot show: NCCL, bf16 autocast, and the memory FSDP saves.
# Trains the same 5 steps under DDP and under --fsdp on every GPU of this machine and prints, side by side, the
# losses (equal up to bf16 rounding) and each mode's peak GPU memory on rank 0.
# Usage: examples/fsdp_gpu_check.sh RUN_DIR [MODEL]    MODEL: tiny (default) or a local Qwen2.5-VL / Qwen3-VL directory
# Knobs: NPROC (all GPUs)  BATCH (8 per process)  PRODUCTS (300)
set -euo pipefail
run=${1:?usage: fsdp_gpu_check.sh RUN_DIR [MODEL]}
model=${2:-tiny}
nproc=${NPROC:-$(nvidia-smi -L | wc -l)}
batch=${BATCH:-8}
w=$run/world
mkdir -p "$run"
[[ -f "$w/world.json" ]] || moon synth "$w" --products "${PRODUCTS:-300}" --seed 0 --overwrite --quiet
[[ -f "$run/pairs.parquet" ]] || moon mine-pairs "$w/behavior.parquet" --catalog "$w/catalog.parquet" -o "$run/pairs.parquet" --overwrite -q
for mode in ddp fsdp; do
  torchrun --nproc_per_node "$nproc" --master_port 29571 -m moon_cli.cli train "$run/pairs.parquet" \
    --catalog "$w/catalog.parquet" -m "$model" -o "$run/$mode" --steps 5 --batch-size "$batch" --val-every 0 \
    --checkpoint-every 0 --overwrite --quiet $([[ $mode == fsdp ]] && echo --fsdp)
done
python3 - "$run" <<'PY'
import json, sys
from pathlib import Path
run = Path(sys.argv[1])
logs = {m: [json.loads(l) for l in (run / m / "train_log.jsonl").read_text().splitlines() if '"loss"' in l] for m in ("ddp", "fsdp")}
for m, recs in logs.items():
    print(f"{m:5s} losses {[round(r['loss'], 4) for r in recs]}  peak GPU memory (rank 0) {max(r.get('max_memory_gb', 0) for r in recs):.2f} GB")
worst = max(abs(a["loss"] - b["loss"]) for a, b in zip(logs["ddp"], logs["fsdp"]))
print(f"largest loss difference {worst:.2e} ({'ok' if worst < 2e-2 else 'TOO LARGE'} for bf16)")
PY
