#!/usr/bin/env bash
# The main job on the embedded default: the whole MOON pipeline on a synthetic marketplace, the `mini` model
# (pretrained parts: EfficientNet-Lite0 + projector + all-MiniLM-L6-v2), CPU.
#   synth → detect-train → detect → mine-pairs → sample-negatives → train → embed → index → search → evaluate
# Usage: examples/demo.sh [RUN_DIR]   (moon must be on PATH; `make demo` arranges that)
# Knobs (environment): PRODUCTS (600), STEPS (120), SEED (0), MODEL (mini; tiny is the random-init preset).
set -euo pipefail
run=${1:-runs/demo}
products=${PRODUCTS:-600}
steps=${STEPS:-120}
seed=${SEED:-0}
model=${MODEL:-mini}
w="$run/world"
mkdir -p "$run"
SECONDS=0
times=()  # "seconds<TAB>step" for the closing table
timed() {  # timed LABEL COMMAND...: run COMMAND, remember how long LABEL took
  local label=$1 start=$SECONDS
  shift
  "$@"
  times+=("$((SECONDS - start))	$label")
}
# the frozen vision tower's features, computed once for every run on this world (moon_cli/model/mini.py)
export MOON_FEATURE_CACHE=${MOON_FEATURE_CACHE:-$run/feature-cache}

echo "== 1. a synthetic world: catalogue, photos, behaviour log, bench" >&2
timed "synth" moon synth "$w" --products "$products" --seed "$seed" --overwrite --quiet
echo "== 2. the core-product detector, then crops for every photo (catalogue, shoppers' query photos, bench)" >&2
timed "detect-train" moon detect-train "$w/boxes.parquet" -o "$run/detector" --overwrite
timed "detect" moon detect "$w" --detector "$run/detector" -o "$run/detections.parquet" --overwrite --quiet
echo "== 3. training data: query → purchase pairs and same-category hard negatives" >&2
timed "mine-pairs" moon mine-pairs "$w/behavior.parquet" --catalog "$w/catalog.parquet" -o "$run/pairs.parquet" --overwrite
timed "sample-negatives" moon sample-negatives "$run/pairs.parquet" --catalog "$w/catalog.parquet" -o "$run/negatives.parquet" \
  --per-pair 8 --overwrite
moon inspect "$run/negatives.parquet" --contract negatives --head 1 >&2
pretrained=$model
if [[ "$model" == mini ]]; then  # the new projector first learns to speak to the pretrained layers, which stay as they are
  echo "== 4a. pre-training on the catalogue alone (photo → own text; only mini's projector trains)" >&2
  timed "train (pre-training)" moon train --objective pretrain --catalog "$w/catalog.parquet" --detections "$run/detections.parquet" -m mini \
    --no-moe --freeze-pretrained -o "$run/pretrain" --steps "$steps" --batch-size 32 --val-every 0 \
    --checkpoint-every 0 --seed "$seed" --overwrite --quiet
  pretrained=$run/pretrain
fi
echo "== 4. post-training (InfoNCE over in-batch + same-category hard negatives, guided MoE; listings' other photos as extra image queries)" >&2
timed "train (post-training)" moon train "$run/pairs.parquet" --catalog "$w/catalog.parquet" --negatives "$run/negatives.parquet" \
  --detections "$run/detections.parquet" -m "$pretrained" -o "$run/model" --steps "$steps" --batch-size 32 \
  --catalog-views --val-every 0 --checkpoint-every 60 --seed "$seed" --overwrite --quiet
echo "== 5. embed the catalogue, index it, search it" >&2
timed "embed" moon embed "$w/catalog.parquet" -m "$run/model" --detections "$run/detections.parquet" \
  -o "$run/catalog_embeddings.parquet" --overwrite --quiet
timed "index" moon index "$run/catalog_embeddings.parquet" -o "$run/index" --overwrite
query=$(moon inspect "$w/bench/text_queries.parquet" --head 1 --json | sed -n 's/.*"query_text": "\([^"]*\)".*/\1/p' | head -1)
echo "search: \"$query\"" >&2
moon search "$run/index" -m "$run/model" --text "$query" -k 3 \
  | sed -E 's/^\{"id": "([^"]*)", "score": ([-0-9.e]+).*"title": "([^"]*)".*/  \2  \1  \3/' >&2  # JSON lines: score, id, title
echo "== 6. evaluate on the bench: trained vs untrained vs pretrained baselines" >&2
others=()
eval_start=$SECONDS
moon evaluate "$w/bench" -m "$model" --label untrained --detections "$run/detections.parquet" -o "$run/eval/untrained" --overwrite --quiet >/dev/null
others+=(--compare "$run/eval/untrained")
for baseline in minilm efficientnet-lite0; do
  if moon evaluate "$w/bench" -m "$baseline" -o "$run/eval/$baseline" --overwrite --quiet >/dev/null 2>"$run/eval-$baseline.log"; then
    others+=(--compare "$run/eval/$baseline")
  else
    echo "  ($baseline skipped: $(tail -1 "$run/eval-$baseline.log"))" >&2
  fi
done
echo >&2
echo "MOON ($model, ${steps} steps) on the synthetic bench — Recall@10 / mean accuracy; deltas vs the first row:" >&2
moon evaluate "$w/bench" -m "$run/model" --label "moon-$model (trained)" --detections "$run/detections.parquet" \
  -o "$run/eval/trained" --overwrite --quiet "${others[@]}"
times+=("$((SECONDS - eval_start))	evaluate (4 models)")
echo >&2
echo "time per step:" >&2
for t in "${times[@]}"; do printf '  %5d s  %s\n' "${t%%	*}" "${t#*	}" >&2; done
echo "(report: $run/eval/trained/report.md; wall time ${SECONDS} s)" >&2
