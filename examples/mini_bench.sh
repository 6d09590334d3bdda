#!/usr/bin/env bash
# The `mini` preset's measurements (README "The mini preset"): one world, one seed, the demo's post-training
# budget (120 steps × 32 queries, hard negatives, catalogue views), each variant one change from another.
# Usage: examples/mini_bench.sh RUN_DIR [VARIANT ...]   (moon on PATH; needs `make baselines`)
# A variant is NAME=ARGS, e.g. "moon-lr5e-5=-m mini --lr 5e-5 --new-lr 1e-3"; "pretrain:NAME=ARGS" pre-trains
# (photo → own text on the catalogue, dense) and the next variant may start from it with -m RUN_DIR/models/NAME.
# Knobs: PRODUCTS (600), SEED (0), STEPS (120), BATCH (32).
set -euo pipefail
run=${1:?usage: mini_bench.sh RUN_DIR [VARIANT ...]}; shift
products=${PRODUCTS:-600}; seed=${SEED:-0}; steps=${STEPS:-120}; batch=${BATCH:-32}
w=$run/world
mkdir -p "$run/models" "$run/eval"
[[ -f "$w/world.json" ]] || moon synth "$w" --products "$products" --seed "$seed" --overwrite --quiet
[[ -f "$run/detector/weights.pt" ]] || moon detect-train "$w/boxes.parquet" -o "$run/detector" --overwrite
[[ -f "$run/detections.parquet" ]] || moon detect "$w" --detector "$run/detector" -o "$run/detections.parquet" --overwrite --quiet
[[ -f "$run/pairs.parquet" ]] || moon mine-pairs "$w/behavior.parquet" --catalog "$w/catalog.parquet" -o "$run/pairs.parquet" --overwrite
[[ -f "$run/negatives.parquet" ]] || moon sample-negatives "$run/pairs.parquet" --catalog "$w/catalog.parquet" \
  -o "$run/negatives.parquet" --per-pair 8 --overwrite
for ref in mini minilm efficientnet-lite0; do  # the reference rows: untrained mini and the two pretrained models
  [[ -f "$run/eval/$ref/metrics.json" ]] || moon evaluate "$w/bench" -m "$ref" --label "$ref" \
    --detections "$run/detections.parquet" -o "$run/eval/$ref" --overwrite --quiet >/dev/null
done
for spec in "$@"; do
  name=${spec%%=*}; args=${spec#*=}
  SECONDS=0
  if [[ $name == pretrain:* ]]; then
    name=${name#pretrain:}
    # shellcheck disable=SC2086 # the variant's flags split on purpose
    [[ -f "$run/models/$name/model.safetensors" ]] || moon train --objective pretrain --catalog "$w/catalog.parquet" \
      --detections "$run/detections.parquet" -o "$run/models/$name" --steps "$steps" --batch-size "$batch" \
      --val-every 0 --checkpoint-every 1000 --seed "$seed" --overwrite -q $args
    echo "$name (pre-training): ${SECONDS} s"
    continue
  fi
  # shellcheck disable=SC2086
  [[ -f "$run/models/$name/model.safetensors" ]] || moon train "$run/pairs.parquet" --catalog "$w/catalog.parquet" \
    --negatives "$run/negatives.parquet" --detections "$run/detections.parquet" -o "$run/models/$name" \
    --steps "$steps" --batch-size "$batch" --catalog-views --val-every 0 --checkpoint-every 1000 --seed "$seed" \
    --overwrite -q $args
  t=$SECONDS
  [[ -f "$run/eval/$name/metrics.json" ]] || moon evaluate "$w/bench" -m "$run/models/$name" --label "$name" \
    --detections "$run/detections.parquet" -o "$run/eval/$name" --overwrite --quiet >/dev/null
  echo "$name: train ${t} s, total ${SECONDS} s"
done
moon report table "$run"/eval/*/
