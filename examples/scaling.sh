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
eval "$(moon report layout scaling)"  # `layout NAME FIELD...`: where each step writes (moon_cli/eval/layout.py)
w=$(layout world) det=$(layout detector) detections=$(layout detections) pairs=$(layout pairs) negatives=$(layout negatives)
log() { echo "== [$(date +%H:%M:%S) +${SECONDS}s] $*" >&2; }
mkdir -p "$run"

[[ -f "$w/world.json" ]] || moon synth "$w" --products "$products" --seed 0 --overwrite --quiet
[[ -f "$det/weights.pt" ]] || moon detect-train "$w/boxes.parquet" -o "$det" --overwrite
[[ -f "$detections" ]] || moon detect "$w" --detector "$det" -o "$detections" --overwrite --quiet
[[ -f "$pairs" ]] || moon mine-pairs "$w/behavior.parquet" --catalog "$w/catalog.parquet" -o "$pairs" --overwrite
[[ -f "$negatives" ]] || moon sample-negatives "$pairs" --catalog "$w/catalog.parquet" -o "$negatives" --per-pair 8 \
  --overwrite
common=("$pairs" --catalog "$w/catalog.parquet" --negatives "$negatives" --detections "$detections" -m "$model"
        --batch-size "$batch" --val-every 0 --checkpoint-every 0 --overwrite --quiet)

train_and_eval() {  # SWEEP X then extra train options
  local sweep=$1 x=$2; shift 2
  local log_file; log_file=$(layout point-log "$sweep" "$x")
  mkdir -p "$(layout point "$sweep" "$x")"
  if [[ ! -f "$(layout point-metrics "$sweep" "$x")" ]]; then
    moon train "${common[@]}" -o "$(layout point-model "$sweep" "$x")" "$@" 2> "$log_file" \
      || { tail -3 "$log_file" >&2; exit 1; }
    moon evaluate "$w/bench" -m "$(layout point-model "$sweep" "$x")" --label "$x" --detections "$detections" \
      -o "$(layout point-eval "$sweep" "$x")" --overwrite --quiet >/dev/null
  fi
}

for steps in $steps_list; do
  log "training samples: $steps steps × batch $batch"
  train_and_eval tokens $((steps * batch)) --steps "$steps" --hard-negatives 1
done
for hard in $hard_list; do
  pool=$((batch * (1 + hard)))  # candidates per query: in-batch products + every query's hard negatives
  log "negatives: $hard hard negative(s) per query (pool $pool)"
  train_and_eval negatives "$pool" --steps "$neg_steps" --hard-negatives "$hard" $([[ $hard == 0 ]] && echo --no-hard-negatives)
done

log "CTR gain against sequence length (embeddings of the longest-trained model)"
longest=$(for s in $steps_list; do echo $((s * batch)); done | sort -n | tail -1)
emb=$(layout embeddings)
[[ -f "$emb" ]] || moon embed "$w/catalog.parquet" -m "$(layout point-model tokens "$longest")" --detections "$detections" \
  -o "$emb" --overwrite --quiet 2>/dev/null
moon ctr "$w/behavior.parquet" --catalog "$w/catalog.parquet" -e "moon=$emb" -o "$(layout ctr)" \
  --seq-lens "$seq_lens" --overwrite --quiet >/dev/null
moon report scaling "$run" --command "${SCALING_COMMAND:-examples/scaling.sh $run}" --seconds "$SECONDS"
log "done: $(layout results)"
