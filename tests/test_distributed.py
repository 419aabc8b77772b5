"""Real multi-process runs on CPU (torchrun, gloo): DDP, DeepSpeed ZeRO-2 and ZeRO-3 on the tiny 4-bit model.

ZeRO-3 with 4-bit weights: what CPU covers and what needs a GPU
  covered here  the 4-bit weights (quant storage bfloat16) are partitioned across 2 ranks, training runs, the
                adapter saved (final and in checkpoints) has the keys and shapes of a plain run with lora_B moved,
                it loads with PeftModel.from_pretrained and generates, and resume continues with the same losses.
  GPU only      bitsandbytes' CUDA kernels on gathered bf16-stored weights, bf16 mixed precision under DeepSpeed,
                accelerate launch --config_file launch/zero3.yaml, a 7B shape's memory and speed:
                benchmarks/gpu_zero3.sh (results: docs/scaling.md).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.distributed, pytest.mark.slow]
REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("distributed_worker.py")


def torchrun(dataset, out, deepspeed_config="", max_steps=4, resume="", sets=(), processes=2):
    launcher = ["-m", "torch.distributed.run", "--standalone", "--nproc_per_node", str(processes)] if processes > 1 else []
    cmd = [sys.executable, *launcher, str(WORKER), str(dataset), str(out), deepspeed_config, str(max_steps), resume,
           *sets]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def check_ranks_agree(out: Path) -> dict:
    a, b = (torch.load(out / f"lora_rank{r}.pt") for r in (0, 1))
    assert a.keys() == b.keys() and a
    assert all(torch.equal(a[k], b[k]) for k in a), "LoRA weights differ between ranks"
    assert any(a[k].abs().sum() > 0 for k in a if "lora_B" in k), "LoRA B never moved"
    losses = json.loads((out / "losses_rank0.json").read_text())
    assert losses and all(math.isfinite(v) for v in losses.values())
    assert (out / "adapter_model.safetensors").is_file()
    assert len(list(out.glob("*.safetensors"))) == 1
    return losses


def test_ddp_two_processes(small_dataset, tiny_model_path, tmp_path):
    out = tmp_path / "ddp"
    torchrun(small_dataset, out)
    check_ranks_agree(out)


def test_zero2_two_processes_and_resume(small_dataset, tiny_model_path, tmp_path):
    out = tmp_path / "zero2"
    torchrun(small_dataset, out, "deepspeed/zero2.json", max_steps=4)
    full = check_ranks_agree(out)
    assert sorted(int(s) for s in full) == [1, 2, 3, 4]
    assert json.loads((out / "steps_run_rank1.json").read_text()) == [1, 2, 3, 4]
    ckpt = out / "checkpoint-2"
    assert (ckpt / "trainer_state.json").is_file()
    resumed = tmp_path / "zero2-resumed"
    torchrun(small_dataset, resumed, "deepspeed/zero2.json", max_steps=4, resume=str(ckpt))
    again = check_ranks_agree(resumed)
    assert json.loads((resumed / "steps_run_rank0.json").read_text()) == [3, 4]  # continued, not from scratch
    for step in ("3", "4"):
        assert again[step] == pytest.approx(full[step], rel=1e-4), (step, again[step], full[step])


def test_train_num_processes_hands_over_to_accelerate_zero2(small_dataset, tiny_model_path, tmp_path):
    out = tmp_path / "handover"
    cmd = [sys.executable, "-m", "ethsft", "train", "--num-processes", "2", "--deepspeed", "zero2",
           "--config", str(REPO / "configs" / "tiny_cpu.yaml"), "--dataset", str(small_dataset),
           "--output", str(out), "--set", "training.max_steps=2"]
    proc = subprocess.run(cmd, cwd=tmp_path, env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    assert "ethsft: handing over to: " in proc.stderr and "--deepspeed_config_file" in proc.stderr
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["num_processes"] == 2 and summary["global_step"] == 2
    assert (out / "adapter_model.safetensors").is_file()


def test_zero3_4bit_two_processes_saves_complete_adapter_and_resumes(small_dataset, tiny_model_path, tmp_path):
    """On CPU: ZeRO-3 with 4-bit weights stored as bfloat16 (the PEFT/TRL QLoRA + ZeRO-3 recipe). The GPU
    half of the check is benchmarks/gpu_zero3.sh."""
    from peft import PeftModel
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM, AutoTokenizer

    plain = tmp_path / "plain"  # one process, no DeepSpeed: the reference adapter layout
    torchrun(small_dataset, plain, max_steps=2, processes=1)
    out = tmp_path / "zero3"
    storage = ("quantization.load_in_4bit=true", "quantization.bnb_4bit_quant_storage=bfloat16")
    torchrun(small_dataset, out, "deepspeed/zero3.json", max_steps=4, sets=storage)

    for rank in (0, 1):  # the 4-bit weights really are sharded: each rank holds half of every parameter
        shards = json.loads((out / f"shards_rank{rank}.json").read_text())
        assert shards["sharded"] == shards["params"] and shards["sharded_4bit"] == 14, shards
        assert shards["local_numel"] * 2 == shards["full_numel"], shards
    reference = load_file(plain / "adapter_model.safetensors")
    for folder in (out, out / "checkpoint-2", out / "checkpoint-4"):
        saved = load_file(folder / "adapter_model.safetensors")
        assert saved.keys() == reference.keys(), folder  # not the empty adapter of ZeRO-3 placeholders
        assert all(saved[k].shape == reference[k].shape for k in saved), folder
        assert all(saved[k].abs().sum() > 0 for k in saved if "lora_B" in k), f"lora_B not trained in {folder}"

    base = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    model = PeftModel.from_pretrained(base, out).eval()
    saved = load_file(out / "adapter_model.safetensors")
    loaded = {n: p for n, p in model.named_parameters() if "lora_B" in n}
    assert loaded and all(p.abs().sum() > 0 for p in loaded.values())
    assert sum(v.numel() for k, v in saved.items() if "lora_B" in k) == sum(p.numel() for p in loaded.values())
    tok = AutoTokenizer.from_pretrained(tiny_model_path)
    ids = tok("Transfer 1 ETH", return_tensors="pt")
    generated = model.generate(**ids, max_new_tokens=4, do_sample=False, pad_token_id=tok.eos_token_id)
    assert generated.shape[1] == ids["input_ids"].shape[1] + 4

    resumed = tmp_path / "zero3-resumed"
    torchrun(small_dataset, resumed, "deepspeed/zero3.json", max_steps=4, resume=str(out / "checkpoint-2"),
             sets=storage)
    assert json.loads((resumed / "steps_run_rank0.json").read_text()) == [3, 4]
    full = json.loads((out / "losses_rank0.json").read_text())
    again = json.loads((resumed / "losses_rank0.json").read_text())
    for step in ("3", "4"):
        assert again[step] == pytest.approx(full[step], rel=1e-4), (step, again[step], full[step])
    final = load_file(resumed / "adapter_model.safetensors")
    assert final.keys() == reference.keys() and all(final[k].shape == reference[k].shape for k in final)
