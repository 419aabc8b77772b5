#!/usr/bin/env bash
# The H100 fast-path figures on one GPU, side by side in one run: the bench (a: the guide's settings, a': TRL's best built-in
# setup, b: the 12GB preset's layout at a 12 GiB budget, b:vram=11: at the preset file's 11 GiB, b80: the 80GB
# preset), then a real `ethsft train` of configs/training_config.yaml (its own 11 GiB budget) on the
# Mistral-7B-shaped random model.
# Usage (repo root, deps installed, GPU): OUT=results bash benchmarks/gpu_fastpath.sh
set -euo pipefail
OUT=${OUT:-results}; mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python -m ethsft bench --model-shape mistral-7b --vram 12 --warmup 2 --steps 6 --mode-timeout 230 \
  --modes "a,a',b,b:vram=11,b80" --out "$OUT/bench.json" 2>&1 | tail -12
W=/tmp/ethsft-preset
python -m ethsft synth --rows 800 --output $W/decoded.csv --seed 7 >/dev/null
python -m ethsft prepare --input $W/decoded.csv --output $W/ds --no-token-stats >/dev/null
python -m ethsft train --config configs/training_config.yaml --base-model embedded:mistral-7b --dataset $W/ds \
  --output $W/run --set training.max_steps=6 --set logging.logging_steps=1 --set logging.eval_steps=1000 \
  --set logging.save_steps=1000 2>&1 | grep -v "it/s]" | tee "$OUT/preset_12gb.log" \
  | grep -E "Fast path|Effective|Model loaded|Peak|Total|tokens/s|rror" || true
cp $W/run/run_summary.json "$OUT/preset_12gb_run_summary.json"
