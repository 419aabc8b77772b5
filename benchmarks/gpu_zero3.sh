#!/usr/bin/env bash
# GPU check: DeepSpeed ZeRO-3 with 4-bit weights (quantization.bnb_4bit_quant_storage=bfloat16, the
# PEFT/TRL QLoRA + ZeRO-3 recipe) on a Mistral-7B-shaped model (random weights), one GPU:
#   accelerate launch --config_file launch/zero3.yaml --num_processes 1 -m ethsft.train ...
# beside a plain `ethsft train` of the same layout. Then checks what CPU cannot (tests/test_distributed.py covers
# the same on a tiny model with 2 CPU processes): the ZeRO-3 adapter has the plain run's keys and shapes, lora_B
# moved, it loads on the 4-bit base with PeftModel.from_pretrained and generates, and a run resumed from
# checkpoint-2 runs steps 3..N with the same losses. Peak memory and tokens/s of both runs go to
# $OUT/zero3_vs_plain.json; logs to $OUT/*.log. The script exits non-zero if a check fails.
# Usage (repo root, deps installed): OUT=results bash benchmarks/gpu_zero3.sh
set -euo pipefail
OUT=${OUT:-results}; mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false
STEPS=${STEPS:-4}
W=/tmp/ethsft-gpu-zero3; mkdir -p $W
python -m ethsft synth --rows 600 --output $W/decoded.csv --seed 7
python -m ethsft prepare --input $W/decoded.csv --output $W/ds --split 0.9 0.05 0.05 --no-token-stats
time python -c "from ethsft.model.embedded import resolve; print(resolve('embedded:mistral-7b'))"
common=(--config configs/guide_12gb.yaml --base-model embedded:mistral-7b --dataset $W/ds
        --set training.max_steps=$STEPS --set logging.logging_steps=1 --set logging.save_steps=2
        --set logging.eval_steps=1000 --set logging.load_best_model_at_end=false --set training.overwrite=true)
zero3=(accelerate launch --config_file launch/zero3.yaml --num_processes 1 -m ethsft.train
       --set quantization.bnb_4bit_quant_storage=bfloat16)
run() {  # name, command...
  local name=$1; shift
  "$@" 2>&1 | grep -v "it/s]" | tee "$OUT/$name.log" | grep -E "Model loaded|Step|Peak|Total time|Trainable|Effective|Error|error" || true
  test -f $W/$name/run_summary.json || { echo "$name: no run_summary.json (failed, see $OUT/$name.log)"; exit 1; }
}
run plain python -m ethsft train "${common[@]}" --output $W/plain
run zero3 "${zero3[@]}" "${common[@]}" --output $W/zero3
run zero3-resumed "${zero3[@]}" "${common[@]}" --output $W/zero3-resumed --resume-from-checkpoint $W/zero3/checkpoint-2

python - "$W" "$OUT" <<'PY'
import json, sys
from pathlib import Path

import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, AutoTokenizer, BitsAndBytesConfig

from ethsft.model.embedded import resolve

W, OUT = Path(sys.argv[1]), Path(sys.argv[2])
checks, failed = {}, []
def check(name, ok, detail=""):
    checks[name] = {"ok": bool(ok), "detail": str(detail)}
    print(("PASS " if ok else "FAIL ") + name, detail)
    if not ok:
        failed.append(name)

ref = load_file(W / "plain" / "adapter_model.safetensors")
for folder in ("zero3", "zero3/checkpoint-2", f"zero3/checkpoint-{json.load(open(W / 'zero3' / 'run_summary.json'))['global_step']}", "zero3-resumed"):
    got = load_file(W / folder / "adapter_model.safetensors")
    check(f"{folder}: same keys as plain", got.keys() == ref.keys(), f"{len(got)} vs {len(ref)} tensors")
    check(f"{folder}: same shapes", all(k in got and got[k].shape == ref[k].shape for k in ref))
    check(f"{folder}: lora_B non-zero", all(v.abs().sum() > 0 for k, v in got.items() if "lora_B" in k))

base_path = resolve("embedded:mistral-7b")
quant = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16,
                           bnb_4bit_use_double_quant=True)
base = AutoModelForCausalLM.from_pretrained(base_path, quantization_config=quant, dtype=torch.bfloat16,
                                            device_map={"": 0})
model = PeftModel.from_pretrained(base, W / "zero3").eval()
tok = AutoTokenizer.from_pretrained(W / "zero3")
ids = tok("Decode this transaction", return_tensors="pt").to(0)
with torch.no_grad():
    gen = model.generate(**ids, max_new_tokens=8, do_sample=False, pad_token_id=tok.pad_token_id or tok.eos_token_id)
check("zero3 adapter loads on the 4-bit base and generates", gen.shape[1] == ids["input_ids"].shape[1] + 8,
      tuple(gen.shape))

def losses(name):
    s = json.load(open(W / name / "run_summary.json"))
    return {h["step"]: h["loss"] for h in s["log_history"] if "loss" in h}
full, again = losses("zero3"), losses("zero3-resumed")
later = sorted(k for k in full if k > 2)
check("resume from checkpoint-2 continues with the same losses",
      later and all(abs(again[k] - full[k]) <= 1e-3 * abs(full[k]) for k in later),
      {k: (full[k], again.get(k)) for k in later})

keys = ("global_step", "memory_after_load_gb", "peak_vram_gb", "train_tokens", "train_runtime_s",
        "train_tokens_per_s", "effective_batch", "num_processes", "trainable_parameters")
runs = {n: {k: json.load(open(W / n / "run_summary.json"))[k] for k in keys} for n in ("plain", "zero3")}
json.dump({"runs": runs, "checks": checks, "torch": torch.__version__, "gpu": torch.cuda.get_device_name(0)},
          open(OUT / "zero3_vs_plain.json", "w"), indent=1)
print(json.dumps(runs, indent=1))
sys.exit(1 if failed else 0)
PY
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv > "$OUT/gpu.txt"
