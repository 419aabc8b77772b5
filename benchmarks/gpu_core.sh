#!/usr/bin/env bash
# GPU check for the core path: the guide's 12GB layout (configs/guide_12gb.yaml) on a Mistral-7B-shaped model (random weights, 4-bit),
# plain `ethsft train` and `accelerate launch --config_file launch/zero2.yaml` with one process, on
# realistic synth samples and on samples padded to 2048 tokens (the worst case for peak memory).
# Usage (repo root, deps installed): OUT=results bash benchmarks/gpu_core.sh
set -euo pipefail
OUT=${OUT:-results}; mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
STEPS=${STEPS:-4}
W=/tmp/ethsft-gpu; mkdir -p $W
python -m ethsft synth --rows 1500 --output $W/decoded.csv --seed 7
python -m ethsft prepare --input $W/decoded.csv --output $W/ds --split 0.9 0.05 0.05 --no-token-stats
python -m ethsft synth --rows 120 --output $W/decoded-small.csv --seed 8
python -m ethsft prepare --input $W/decoded-small.csv --output $W/ds-small --split 0.8 0.1 0.1 --no-token-stats
python benchmarks/long_dataset.py --dataset $W/ds-small --output $W/ds-2048 --tokens 2048
time python -c "from ethsft.model.embedded import resolve; print(resolve('embedded:mistral-7b'))"
common=(--config configs/guide_12gb.yaml --base-model embedded:mistral-7b --set training.max_steps=$STEPS
        --set logging.logging_steps=1 --set logging.save_steps=1000 --set logging.eval_steps=1000)
run() {  # name, launcher..., -- dataset
  local name=$1; shift
  "$@" --output $W/$name 2>&1 | grep -v "it/s]" | tee "$OUT/$name.log" | grep -E "Model loaded|Step|Peak|Total time|Trainable|Effective|Error|error" || true
  python - "$W/$name/run_summary.json" "$OUT/$name.json" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
keep = {k: s[k] for k in ("global_step", "memory_after_load_gb", "peak_vram_gb", "train_tokens", "train_runtime_s",
                          "train_tokens_per_s", "effective_batch", "num_processes", "trainable_parameters")}
json.dump(keep, open(sys.argv[2], "w"), indent=1); print(sys.argv[2], keep)
PY
}
RUNS=${RUNS:-"plain-realistic plain-2048 zero2-2048 zero2-realistic"}
for r in $RUNS; do
  case $r in
    plain-realistic) run $r python -m ethsft train "${common[@]}" --dataset $W/ds ;;
    # the same with cuDNN SDPA left on (ethsft turns it off): the side-by-side for that switch
    plain-realistic-cudnn) run $r python -c "import sys, ethsft.fastpath.runtime as f; f.configure_runtime = dict; sys.argv[0] = 'ethsft.train'; from ethsft.train import main; main()" "${common[@]}" --dataset $W/ds ;;
    plain-2048) run $r python -m ethsft train "${common[@]}" --dataset $W/ds-2048 ;;
    zero2-realistic) run $r accelerate launch --config_file launch/zero2.yaml --num_processes 1 -m ethsft.train "${common[@]}" --dataset $W/ds ;;
    zero2-2048) run $r accelerate launch --config_file launch/zero2.yaml --num_processes 1 -m ethsft.train "${common[@]}" --dataset $W/ds-2048 ;;
  esac
done
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt"
