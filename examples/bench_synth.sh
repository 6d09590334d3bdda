#!/usr/bin/env bash
# Benchmark: how fast `moon synth` builds a 10,000-product world (target: <= 60 s on 2 cores).
set -euo pipefail
run=${1:-runs/bench-synth}
mkdir -p "$run"
echo "machine: $(nproc) cores, $(python3 -c 'import platform; print(platform.processor() or platform.machine())')" >&2
start=$(date +%s.%N)
moon synth "$run/world" --products 10000 --seed 1 --overwrite --quiet
end=$(date +%s.%N)
python3 - "$start" "$end" <<'PY'
import sys
s = float(sys.argv[2]) - float(sys.argv[1])
print(f"moon synth --products 10000: {s:.1f} s wall, {10000 / s:.0f} products/s (target <= 60 s)")
PY
