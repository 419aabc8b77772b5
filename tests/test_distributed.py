"""Real multi-process runs on CPU (torchrun, gloo): DDP and DeepSpeed ZeRO-2 on the tiny 4-bit model."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = pytest.mark.distributed
REPO = Path(__file__).resolve().parents[1]
WORKER = Path(__file__).with_name("distributed_worker.py")


def torchrun(dataset, out, deepspeed_config="", max_steps=4, resume=""):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(WORKER), str(dataset), str(out), deepspeed_config, str(max_steps), resume]
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
