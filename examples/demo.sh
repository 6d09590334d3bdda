#!/usr/bin/env bash
# The main job on the embedded default: build a synthetic world and summarise it.
# Usage: examples/demo.sh [RUN_DIR]   (moon must be on PATH; `make demo` arranges that)
set -euo pipefail
run=${1:-runs/demo}
mkdir -p "$run"

moon synth "$run/world" --products 300 --seed 0 --overwrite
moon inspect "$run/world/catalog.parquet" --contract catalog --head 3
