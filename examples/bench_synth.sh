#!/usr/bin/env bash
# Benchmark: how fast `moon synth` builds a 10,000-product world (target: <= 60 s on 2 cores).
set -euo pipefail
run=${1:-runs/bench-synth}
mkdir -p "$run"
echo "machine: $(nproc) cores, $(uname -m)" >&2
start=$(date +%s.%N)
moon synth "$run/world" --products 10000 --seed 1 --overwrite --quiet
end=$(date +%s.%N)
awk -v s="$start" -v e="$end" 'BEGIN { t = e - s; printf "moon synth --products 10000: %.1f s wall, %.0f products/s (target <= 60 s)\n", t, 10000 / t }'
