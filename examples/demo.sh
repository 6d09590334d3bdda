#!/usr/bin/env bash
# The main job on the embedded default: a synthetic world through the data stages.
#   synth → detect-train → detect → mine-pairs | sample-negatives
# Usage: examples/demo.sh [RUN_DIR]   (moon must be on PATH; `make demo` arranges that)
# (train / embed / index / evaluate join this pipeline as those stages land.)
set -euo pipefail
run=${1:-runs/demo}
w="$run/world"
mkdir -p "$run"

moon synth "$w" --products 300 --seed 0 --overwrite
moon detect-train "$w/boxes.parquet" -o "$run/detector" --overwrite
moon detect "$w/catalog.parquet" --weights "$run/detector" -o "$run/detections.parquet" --overwrite --quiet
# stages pipe: the negatives stream straight into `moon inspect`
moon mine-pairs "$w/behavior.parquet" --catalog "$w/catalog.parquet" -o "$run/pairs.parquet" --overwrite
moon sample-negatives "$run/pairs.parquet" --catalog "$w/catalog.parquet" -o - --per-pair 8 \
  | moon inspect - --contract negatives --head 1
