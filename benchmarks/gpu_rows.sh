#!/usr/bin/env bash
# Row-length exploration on one GPU: the compiled fast path (4-bit weights dequantised inside the compiled layers)
# at several row lengths, each fitted to an 11 GiB budget, beside TRL's best (a'). One bench run per mode so a
# mode that overruns loses only itself. Usage (repo root, deps installed, GPU): OUT=results bash benchmarks/gpu_rows.sh
set -uo pipefail
OUT=${OUT:-results}; mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
python -c "from ethsft.model.embedded import resolve; print(resolve('embedded:mistral-7b'))" 2>&1 | tail -1
[ "${NF4_CHECK:-1}" != 0 ] && { python benchmarks/gpu_nf4_check.py > "$OUT/nf4_check.log" 2>&1; grep "^[0-9]" "$OUT/nf4_check.log"; }
i=0
DEFAULT="a' b:compile=1;rows=2048;accum=4;vram=11 b:compile=1;rows=4096;accum=2;vram=11 b:compile=1;rows=3072;accum=3;vram=11"
for m in "${@:-$DEFAULT}"; do
  for mode in $m; do
    i=$((i+1))
    timeout 200 python -m ethsft bench --model-shape mistral-7b --vram 12 --warmup 2 --steps 4 --mode-timeout 190 \
      --modes "$mode" --out "$OUT/mode$i.json" > "$OUT/mode$i.log" 2>&1
    python - "$OUT/mode$i.json" <<'PY' || tail -5 "$OUT/mode$i.log"
import json, sys
for r in json.load(open(sys.argv[1]))["modes"]:
    print(r["mode"], round(r.get("tokens_per_s", 0)), "tok/s", round(r.get("peak_allocated_gib", 0), 2), "GiB",
          r.get("checkpointing", {}).get("checkpointed"), "ckpt", r.get("error", ""))
PY
  done
done
