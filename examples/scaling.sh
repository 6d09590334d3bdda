#!/usr/bin/env bash
# Scaling study: bench Recall@10 against training samples (steps × batch) and against the negatives per
# query (in-batch + same-category hard negatives), and CTR gain against the behaviour-sequence length;
# power laws fitted where they fit (scaling.md, scaling.png).
# Usage: examples/scaling.sh RUN_DIR     (moon on PATH; `make scaling` arranges that)
# Knobs: PRODUCTS (600)  STEPS_LIST ("15 30 60 120")  HARD_LIST ("0 1 3 7")  NEG_STEPS (60)  BATCH (16)
#        SEQ_LENS (1,2,4,8,16,32,64)  MODEL (tiny)
set -euo pipefail
run=${1:?usage: scaling.sh RUN_DIR}
products=${PRODUCTS:-600}
steps_list=${STEPS_LIST:-15 30 60 120}
hard_list=${HARD_LIST:-0 1 3 7}
neg_steps=${NEG_STEPS:-60}
batch=${BATCH:-16}
seq_lens=${SEQ_LENS:-1,2,4,8,16,32,64}
model=${MODEL:-tiny}
SECONDS=0
w=$run/world
log() { echo "== [$(date +%H:%M:%S) +${SECONDS}s] $*" >&2; }
mkdir -p "$run"

[[ -f "$w/world.json" ]] || moon synth "$w" --products "$products" --seed 0 --overwrite --quiet
[[ -f "$run/detector/weights.pt" ]] || moon detect-train "$w/boxes.parquet" -o "$run/detector" --overwrite
[[ -f "$run/detections.parquet" ]] || moon detect "$w" --detector "$run/detector" -o "$run/detections.parquet" --overwrite --quiet
[[ -f "$run/pairs.parquet" ]] || moon mine-pairs "$w/behavior.parquet" --catalog "$w/catalog.parquet" -o "$run/pairs.parquet" --overwrite
[[ -f "$run/negatives.parquet" ]] || moon sample-negatives "$run/pairs.parquet" --catalog "$w/catalog.parquet" \
  -o "$run/negatives.parquet" --per-pair 8 --overwrite
common=("$run/pairs.parquet" --catalog "$w/catalog.parquet" --negatives "$run/negatives.parquet"
        --detections "$run/detections.parquet" -m "$model" --batch-size "$batch" --val-every 0 --checkpoint-every 0
        --overwrite --quiet)

train_and_eval() {  # DIR then extra train options
  local dir=$1; shift
  if [[ ! -f "$dir/eval/metrics.json" ]]; then
    moon train "${common[@]}" -o "$dir/model" "$@" 2> "$dir.log" || { tail -3 "$dir.log" >&2; exit 1; }
    moon evaluate "$w/bench" -m "$dir/model" --label "$(basename "$dir")" --detections "$run/detections.parquet" \
      -o "$dir/eval" --overwrite --quiet >/dev/null
  fi
}

mkdir -p "$run/tokens" "$run/negatives"
for steps in $steps_list; do
  log "training samples: $steps steps × batch $batch"
  train_and_eval "$run/tokens/$((steps * batch))" --steps "$steps" --hard-negatives 1
done
for hard in $hard_list; do
  pool=$((batch * (1 + hard)))  # candidates per query: in-batch products + every query's hard negatives
  log "negatives: $hard hard negative(s) per query (pool $pool)"
  train_and_eval "$run/negatives/$pool" --steps "$neg_steps" --hard-negatives "$hard" $([[ $hard == 0 ]] && echo --no-hard-negatives)
done

log "CTR gain against sequence length (embeddings of the longest-trained model)"
longest=$(for s in $steps_list; do echo $((s * batch)); done | sort -n | tail -1)
[[ -f "$run/emb.parquet" ]] || moon embed "$w/catalog.parquet" -m "$run/tokens/$longest/model" --detections "$run/detections.parquet" \
  -o "$run/emb.parquet" --overwrite --quiet 2>/dev/null
moon ctr "$w/behavior.parquet" --catalog "$w/catalog.parquet" -e "moon=$run/emb.parquet" -o "$run/ctr" \
  --seq-lens "$seq_lens" --overwrite --quiet >/dev/null
python3 -m moon_cli.eval.scaling "$run" --command "${SCALING_COMMAND:-examples/scaling.sh $run}" --seconds "$SECONDS"
log "done: $run/scaling.md"
