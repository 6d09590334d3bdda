#!/usr/bin/env bash
# Reproduce the MOON papers' relative claims: full model vs ablations vs a dual-encoder baseline on the bench,
# frozen embeddings in a CTR model, and the exchange rate of each offline metric.
# Usage: examples/reproduce.sh RUN_DIR          (moon must be on PATH; `make reproduce` arranges that)
# Knobs (environment):
#   DATA      a folder holding catalog.parquet, behavior.parquet and bench/ (+ boxes.parquet to train the
#             detector); default: a synthetic world of PRODUCTS products
#   MODEL     mini (pretrained parts, CPU), tiny (random init, CPU) or a Qwen2-VL-family hub id / local path
#             (LoRA; GPUs)
#   PRODUCTS (1000)  STEPS (60)  BATCH (16 per process)  SEEDS ("0 1 2")  CTR_SEEDS (0,1,2)
#   PRETRAIN_STEPS  steps of the pre-training (photo → own text on the catalogue alone, dense) that every
#             version of a seed post-trains from, MOON Embedding's first stage [default: 2 × STEPS; 0 = none]
#   PRETRAIN_ARGS   extra `moon train --objective pretrain` options [default: --freeze-pretrained for mini]
#   NPROC     processes per training run, under torchrun (2: on 2 cores as fast as one process, and the
#             other process's products become negatives — the "spatial" part the no-queue-gather row removes)
#   LR        learning rate [default: the model's recipe]      SEQ_LENS  CTR sequence lengths (2,8,32)
#   CONFIG    a JSON of model-config overrides for `moon train --config` (e.g. examples/configs/qwen2.5-vl-3b.json)
#   VIEWS     1 (default): train every version with `--catalog-views` (listings' other photos as extra image
#             queries: the world's shoppers send few photos); 0: the papers' pairs alone
#   WORLD_SEED  seed of the synthetic world (0): another seed is another world, for checking a result holds
#   VARIANTS  the versions to train, e.g. "moon dual-encoder" [default: moon and every ablation, then the dual]
#   REAL      the real-photo bench (benchmarks/real_photos.py; built there, from two Debian packages, when
#             absent) [default: RUN_DIR/real-photos/bench]; REAL=0 leaves it out
set -euo pipefail
run=${1:?usage: reproduce.sh RUN_DIR}
model=${MODEL:-mini}
products=${PRODUCTS:-1000}
world_seed=${WORLD_SEED:-0}
steps=${STEPS:-60}
batch=${BATCH:-16}
seeds=${SEEDS:-0 1 2}
ctr_seeds=${CTR_SEEDS:-0,1,2}
nproc=${NPROC:-2}
pretrain_steps=${PRETRAIN_STEPS:-$((2 * steps))}  # a pre-training step is cheap: photo → text alone, no hard negatives
default_pretrain_args=""
[[ "$model" == mini ]] && default_pretrain_args="--freeze-pretrained"
pretrain_args=${PRETRAIN_ARGS-$default_pretrain_args}
seq_lens=${SEQ_LENS:-2,8,32}
train_opts=()
[[ -n "${LR:-}" ]] && train_opts=(--lr "$LR")
[[ -n "${CONFIG:-}" ]] && train_opts+=(--config "$CONFIG")
post_opts=()  # post-training only
[[ "${VIEWS:-1}" == 1 ]] && post_opts+=(--catalog-views)
mkdir -p "$run"
SECONDS=0
eval "$(moon report layout reproduce)"  # `layout NAME FIELD...`: where each step writes (moon_cli/eval/layout.py)
# the frozen vision tower's features, computed once for every run on this world (moon_cli/model/feature_cache.py)
export MOON_FEATURE_CACHE=${MOON_FEATURE_CACHE:-$(layout feature-cache)}
log() { echo "== [$(date +%H:%M:%S) +${SECONDS}s] $*" >&2; }

# ---------------------------------------------------------------- 1. the data: a synthetic world or DATA
if [[ -n "${DATA:-}" ]]; then
  w=$DATA
  [[ -d "$w" ]] || { echo "Error: DATA=$w is not a directory" >&2; exit 1; }
  log "checking DATA=$w against the contracts"
  moon inspect "$w/catalog.parquet" --contract catalog >/dev/null
  moon inspect "$w/behavior.parquet" --contract behavior >/dev/null
  [[ -f "$w/bench/bench.json" ]] || { echo "Error: $w/bench/bench.json: no such file; DATA needs a bench/ folder (bench.json naming the gallery and task tables) in the layout \`moon synth\` writes" >&2; exit 1; }
else
  w=$(layout world)
  log "a synthetic world of $products products (seed $world_seed)"
  [[ -f "$w/world.json" ]] || moon synth "$w" --products "$products" --seed "$world_seed" --overwrite --quiet
fi

# ---------------------------------------------------------------- 2. detector, crops of every photo (catalogue, queries, bench)
crops=()
if [[ -f "$w/boxes.parquet" ]]; then
  log "core-product detector and crops"
  [[ -f "$(layout detector)/weights.pt" ]] || moon detect-train "$w/boxes.parquet" -o "$(layout detector)" --overwrite
  [[ -f "$(layout detections)" ]] || moon detect "$w" --detector "$(layout detector)" -o "$(layout detections)" --overwrite --quiet
  crops=(--detections "$(layout detections)")
else
  log "no $w/boxes.parquet: no detector, no crops (the no-crops ablation is skipped)"
fi

# ---------------------------------------------------------------- 3. pairs and hard negatives
pairs=$(layout pairs) negatives=$(layout negatives)
[[ -f "$pairs" ]] || moon mine-pairs "$w/behavior.parquet" --catalog "$w/catalog.parquet" -o "$pairs" --overwrite
[[ -f "$negatives" ]] || moon sample-negatives "$pairs" --catalog "$w/catalog.parquet" -o "$negatives" --per-pair 8 \
  --overwrite

# ---------------------------------------------------------------- 4. train every variant, per seed
# the alignment row toggles MOON2.0's intra-product photo↔text term against the model's plan (its recipe)
align=$(moon train --print-plan -m "$model" | sed -n '/^  "train": {/,/^  }/s/^    "align_weight": \([^,]*\),\{0,1\}$/\1/p')
declare -A variants=(
  [moon]=""
  [no-crops]="--no-crops"
  [no-moe]="--no-moe"
  [no-hard-negatives]="--no-hard-negatives"
  [dual-encoder]="--arch dual"
  # not in the default order: the temporal queue alone off, for MOON and the dual (VARIANTS="no-queue dual-no-queue")
  [no-queue]="--no-queue"
  [dual-no-queue]="--arch dual --no-queue"
)
if [[ "$align" == 0 || "$align" == 0.0 ]]; then align_row=align; variants[align]="--align-weight 0.5"
else align_row=no-align; variants[no-align]="--align-weight 0"; fi
order=(moon "$align_row" no-crops no-moe no-hard-negatives)
(( nproc > 1 )) && { variants[no-queue-gather]="--no-queue --no-gather"; order+=(no-queue-gather); }
order+=(dual-encoder)
[[ ${#crops[@]} -eq 0 ]] && order=("${order[@]/no-crops}")
if [[ -n "${VARIANTS:-}" ]]; then
  for v in $VARIANTS; do [[ -n "${variants[$v]+set}" ]] || { echo "Error: VARIANTS: unknown version '$v'; known: ${!variants[*]}" >&2; exit 1; }; done
  order=($VARIANTS)
fi
# rows of results.md, CTR and the exchange rate: every version trained in this run directory (an earlier
# invocation's with other VARIANTS too), in this order
listing=(moon align no-align no-queue no-crops no-moe no-hard-negatives no-queue-gather dual-encoder dual-no-queue)
launcher=(moon)
(( nproc > 1 )) && launcher=(torchrun --standalone --nproc_per_node "$nproc" "$(command -v moon)")

for seed in $seeds; do
  start=$model
  mkdir -p "$(layout seed "$seed")"
  if (( pretrain_steps > 0 )); then  # one pre-training per seed, shared by every version (MOON Embedding's stage 1)
    start=$(layout model "$seed" pretrain)
    if [[ ! -f "$start/model.safetensors" ]]; then
      log "seed $seed: pre-train (catalogue alone)"
      t0=$SECONDS
      # shellcheck disable=SC2086 # the options split on purpose
      "${launcher[@]}" train --objective pretrain --catalog "$w/catalog.parquet" "${crops[@]}" -m "$model" --no-moe \
        -o "$start" --steps "$pretrain_steps" --batch-size "$batch" "${train_opts[@]}" $pretrain_args \
        --val-every 0 --checkpoint-every 0 --seed "$seed" --overwrite --quiet 2> "$(layout train-log "$seed" pretrain)" \
        || { tail -3 "$(layout train-log "$seed" pretrain)" >&2; exit 1; }
      echo $((SECONDS - t0)) > "$(layout seconds "$seed" pretrain)"
    fi
  fi
  for v in "${order[@]}"; do
    [[ -z "$v" ]] && continue
    out=$(layout model "$seed" "$v") train_log=$(layout train-log "$seed" "$v") eval_dir=$(layout eval "$seed" "$v")
    if [[ ! -f "$out/model.safetensors" ]]; then
      log "seed $seed: train $v"
      t0=$SECONDS
      # shellcheck disable=SC2086 # the variant's flags split on purpose
      "${launcher[@]}" train "$pairs" --catalog "$w/catalog.parquet" --negatives "$negatives" \
        "${crops[@]}" -m "$start" -o "$out" --steps "$steps" --batch-size "$batch" "${train_opts[@]}" \
        "${post_opts[@]}" --val-every 0 --checkpoint-every 0 --seed "$seed" --overwrite --quiet ${variants[$v]} 2> "$train_log" \
        || { tail -3 "$train_log" >&2; exit 1; }
      echo $((SECONDS - t0)) > "$(layout seconds "$seed" "$v")"  # the training's wall time, for results.md
    fi
    [[ -f "$eval_dir/metrics.json" ]] || moon evaluate "$w/bench" -m "$out" --label "$v" "${crops[@]}" \
      -o "$eval_dir" --overwrite --quiet >/dev/null
  done
done
first=${seeds%% *}
log "reference rows: the untrained model and the pretrained baselines"
[[ -f "$(layout metrics "$first" untrained)" ]] || moon evaluate "$w/bench" -m "$model" --label untrained "${crops[@]}" \
  -o "$(layout eval "$first" untrained)" --overwrite --quiet >/dev/null
if (( pretrain_steps > 0 )) && [[ ! -f "$(layout metrics "$first" pretrain)" ]]; then  # stage 1 alone
  moon evaluate "$w/bench" -m "$(layout model "$first" pretrain)" --label pretrain "${crops[@]}" \
    -o "$(layout eval "$first" pretrain)" --overwrite --quiet >/dev/null
fi
baselines=()
for b in minilm efficientnet-lite0; do
  if [[ -f "$(layout metrics "$first" "$b")" ]] || moon evaluate "$w/bench" -m "$b" --label "$b" \
      -o "$(layout eval "$first" "$b")" --overwrite --quiet >/dev/null 2>"$(layout baseline-log "$b")"; then
    baselines+=("$b")
  else
    echo "  ($b skipped: $(tail -1 "$(layout baseline-log "$b")"))" >&2
  fi
done

trained=()
for v in "${listing[@]}"; do [[ -f "$(layout model "$first" "$v")/model.safetensors" ]] && trained+=("$v"); done

# ---------------------------------------------------------------- 5. application: CTR with each version's frozen embeddings
log "CTR with frozen embeddings of every version (seed $first models)"
emb=()
versions=()
for v in "${trained[@]}" untrained "${baselines[@]}"; do
  [[ -z "$v" ]] && continue
  src=$(layout model "$first" "$v")
  [[ "$v" == untrained ]] && src=$model
  [[ " ${baselines[*]} " == *" $v "* ]] && src=$v
  e=$(layout embeddings "$v")
  [[ -f "$e" ]] || moon embed "$w/catalog.parquet" -m "$src" "${crops[@]}" -o "$e" --overwrite --quiet 2>/dev/null
  emb+=(-e "$v=$e")
  versions+=("$(layout eval "$first" "$v")")
done
moon ctr "$w/behavior.parquet" --catalog "$w/catalog.parquet" "${emb[@]}" -o "$(layout ctr)" --seq-lens "$seq_lens" \
  --seeds "$ctr_seeds" --overwrite --quiet >/dev/null
log "exchange rate of each bench metric across ${#versions[@]} versions"
moon exchange-rate "${versions[@]}" --ctr "$(layout ctr)" -o "$(layout exchange)" --overwrite >/dev/null

# ---------------------------------------------------------------- 5b. real photos: is the alignment kept?
real_dir=$(layout real-photos)
real=${REAL:-$real_dir/bench}
if [[ "$real" != 0 && ! -f "$real_dir/report.md" ]]; then
  log "real photos (text → photo, photo → text, photo → photo): untrained, pretrained and post-trained $model vs conse"
  real_models=(-m "untrained=$model" -m conse)
  (( pretrain_steps > 0 )) && real_models+=(-m "pretrain=$(layout model "$first" pretrain)")
  [[ -f "$(layout model "$first" moon)/model.safetensors" ]] && real_models+=(-m "moon=$(layout model "$first" moon)")
  python3 "$(dirname "$0")/../benchmarks/bench_real.py" "$real_dir" --bench "$real" "${real_models[@]}" \
    >/dev/null 2>"$(layout real-photos-log)" || echo "  (real photos skipped: $(tail -1 "$(layout real-photos-log)"))" >&2
fi

# ---------------------------------------------------------------- 6. results.md
notes=()
[[ -f "${NOTES:-}" ]] && notes=(--notes "$NOTES")
moon report reproduce "$run" --title "MOON reproduction (${model}, ${steps} steps × batch ${batch} × ${nproc} process(es))" \
  --command "${REPRODUCE_COMMAND:-examples/reproduce.sh $run}" --seconds "$SECONDS" \
  --order "$(IFS=,; echo "${trained[*]},pretrain,untrained,${baselines[*]}" | tr ' ' ',')" "${notes[@]}"
if [[ -f "$real_dir/report.md" ]]; then  # the real-photo table under the synthetic ones
  { echo; sed '1s/^# /## /' "$real_dir/report.md"; } >> "$(layout results)"
fi
log "done: $(layout results)"
