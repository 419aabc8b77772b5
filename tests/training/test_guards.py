"""Training-time guards (ethsft/training/guards.py) on long runs that get killed: kill -9 then resume, SIGTERM,
half-written checkpoints, NaN loss, overfitting, CUDA out of memory. Training runs use the tiny 4-bit model on CPU."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from transformers import TrainerCallback, TrainerControl

from conftest import REPO, tiny_settings, wait_for

# One schedule for every run compared here: 8 steps of 4 samples (2 epochs of 16), a checkpoint every 2 steps.
COMMON = ["training.num_train_epochs=1", "training.per_device_train_batch_size=4", "logging.logging_steps=1",
          "logging.eval_steps=2", "logging.save_steps=2", "training.max_steps=8", "logging.eval_strategy=no",
          "logging.load_best_model_at_end=false", "training.learning_rate=2e-3", "logging.save_total_limit=2"]
STEPS = list(range(1, 9))


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Same numerics in every run of this module (and no oversubscription on small CI machines)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


class StepCounter(TrainerCallback):
    """Optimizer steps this process actually ran: a resumed run restores log_history from the checkpoint."""

    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def losses(history) -> dict[int, float]:
    return {h["step"]: h["loss"] for h in history if "loss" in h}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 8-step run: per-step losses and the dataset it trained on."""
    from conftest import make_record, write_split
    import random

    from ethsft.training.recipe import run

    root = tmp_path_factory.mktemp("robust")
    rng = random.Random(0)
    data = root / "datasets"
    data.mkdir()
    for split, n in (("train", 16), ("validation", 8)):
        write_split(data / f"{split}.jsonl", [make_record(rng) for _ in range(n)])
    counter = StepCounter()
    summary = run(tiny_settings(data, root / "reference", *COMMON), callbacks=[counter])
    assert counter.steps == STEPS
    ref = losses(summary["log_history"])
    assert sorted(ref) == STEPS and all(math.isfinite(v) for v in ref.values())
    return SimpleNamespace(data=data, losses=ref)


def train_cli(data: Path, out: Path) -> list[str]:
    """`python -m ethsft.train` with exactly the settings of tiny_settings(data, out, *COMMON)."""
    cmd = [sys.executable, "-m", "ethsft.train", "--config", "configs/tiny_cpu.yaml", "--dataset", str(data),
           "--output", str(out)]
    for item in COMMON:
        cmd += ["--set", item]
    return cmd


def start(cmd, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    log = open(tmp_path / "proc.log", "w")
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT), tmp_path / "proc.log"


def resume_and_compare(reference, out: Path, stopped_at: int) -> dict:
    """Resume ``out`` with 'latest' in this process; the steps it runs must continue and match the reference."""
    from ethsft.training.recipe import run

    counter = StepCounter()
    summary = run(tiny_settings(reference.data, out, *COMMON), "latest", callbacks=[counter])
    assert summary["resumed_from"] == str(out / f"checkpoint-{stopped_at}")
    assert counter.steps == list(range(stopped_at + 1, 9)), counter.steps  # continued, not restarted
    resumed = losses(summary["log_history"])
    assert sorted(resumed) == STEPS
    for step in STEPS:  # every step: the restored ones and the ones this process ran
        assert resumed[step] == pytest.approx(reference.losses[step], rel=1e-4), (step, resumed, reference.losses)
    return summary


@pytest.mark.slow  # subprocesses
def test_kill9_mid_run_then_resume_latest_continues_with_same_losses(reference, tmp_path, monkeypatch):
    out = tmp_path / "killed"
    proc, log = start(train_cli(reference.data, out), tmp_path)
    wait_for(lambda: (out / "checkpoint-4" / "trainer_state.json").is_file(), proc, "checkpoint-4")
    proc.send_signal(signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL, log.read_text()[-3000:]
    assert not (out / "run_summary.json").exists()

    from ethsft.training.outputs import complete_checkpoints

    # whatever the kill interrupted, every checkpoint-N folder is complete (half-written ones are .tmp-...)
    folders = sorted(p.name for p in out.glob("checkpoint-*"))
    assert folders == [p.name for p in complete_checkpoints(out)] and "checkpoint-4" in folders
    stopped_at = int(complete_checkpoints(out)[-1].name.split("-")[1])
    assert 4 <= stopped_at < 8

    secret = "hf_" + "Zq3" * 12  # a token in the environment never reaches the summary or the log
    monkeypatch.setenv("HF_TOKEN", secret)
    resume_and_compare(reference, out, stopped_at)
    saved = (out / "run_summary.json").read_text()
    assert secret not in saved and secret not in (out / "training_logs.txt").read_text()
    assert json.loads(saved)["environment"]["HF_TOKEN"] == "<redacted>"


@pytest.mark.slow  # subprocesses
def test_sigterm_finishes_the_step_saves_a_checkpoint_and_exits_143(reference, tmp_path):
    out = tmp_path / "term"
    cmd = train_cli(reference.data, out) + ["--set", "logging.save_steps=100"]  # the only save: the signal's
    proc, log = start(cmd, tmp_path)
    wait_for(lambda: "Step 2/8" in ((out / "training_logs.txt").read_text()
                                     if (out / "training_logs.txt").exists() else ""), proc, "step 2")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) == 143, log.read_text()[-3000:]
    text = log.read_text()
    assert "ethsft: SIGTERM received: finishing the current step, then saving a checkpoint and stopping" in text
    found = [p for p in out.glob("checkpoint-*")]
    assert len(found) == 1 and (found[0] / "trainer_state.json").is_file()
    step = int(found[0].name.split("-")[1])
    assert 2 <= step < 8
    expected = (f"ethsft: stopped by SIGTERM at step {step}; checkpoint saved to {found[0]}; resume with: "
                f"python -m ethsft.train --config configs/tiny_cpu.yaml --dataset {reference.data} --output {out} ")
    assert expected in text and text.rstrip().endswith("--resume-from-checkpoint latest"), text[-2000:]
    assert not (out / "run_summary.json").exists() and not (out / "adapter_model.safetensors").exists()
    assert json.loads((found[0] / "trainer_state.json").read_text())["global_step"] == step
    resume_and_compare(reference, out, step)


def test_second_signal_exits_at_once_and_a_stop_saves_at_step_end():
    from ethsft.training.guards import StopGuard

    exits, lines = [], []
    guard = StopGuard(exit_fn=exits.append, stream=SimpleNamespace(write=lines.append, flush=lambda: None))
    args = SimpleNamespace(world_size=1, save_strategy="no")
    state = SimpleNamespace(global_step=7)
    control = TrainerControl()
    guard.on_step_end(args, state, control)
    assert not control.should_training_stop and not control.should_save
    guard.handle(signal.SIGINT)
    assert exits == []
    guard.on_step_end(args, state, control)
    assert control.should_save and control.should_training_stop and guard.stopped_at == 7  # even with save "no"
    guard.handle(signal.SIGINT)
    assert exits == [130]
    assert "".join(lines).splitlines() == [
        "ethsft: SIGINT received: finishing the current step, then saving a checkpoint and stopping "
        "(send SIGINT again to exit at once)",
        "ethsft: second SIGINT: exiting now, without a checkpoint"]


def test_a_save_cut_off_midway_leaves_no_checkpoint_that_looks_usable(small_dataset, tmp_path):
    from ethsft.training.outputs import find_resume_checkpoint
    from ethsft.training.recipe import build_trainer

    out = tmp_path / "cut"
    trainer = build_trainer(tiny_settings(small_dataset, out, "training.max_steps=2", "logging.save_steps=1",
                                          "logging.eval_strategy=no", "logging.load_best_model_at_end=false")).trainer
    real = trainer._save_rng_state

    def dies_on_second_save(output_dir):
        if trainer.state.global_step == 2:
            raise KeyboardInterrupt("killed while saving")  # model and optimizer written, state not yet
        real(output_dir)

    trainer._save_rng_state = dies_on_second_save
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    assert (out / ".tmp-checkpoint" / "checkpoint-2" / "adapter_model.safetensors").is_file()
    assert not (out / "checkpoint-2").exists()
    assert (out / "checkpoint-1" / "trainer_state.json").is_file()
    assert find_resume_checkpoint(out, "latest") == out / "checkpoint-1"

    trainer._save_rng_state = real  # the next save of that step replaces the leftover
    trainer._save_checkpoint(trainer.model, None)
    assert not (out / ".tmp-checkpoint").exists()
    assert find_resume_checkpoint(out, "latest") == out / "checkpoint-2"
    assert (out / "checkpoint-2" / "rng_state.pth").is_file()


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(small_dataset, tmp_path, monkeypatch):
    from trl import SFTTrainer

    from ethsft.training.guards import TrainingStopped
    from ethsft.training.recipe import run

    real = SFTTrainer.compute_loss

    def diverges_at_step_3(self, *args, **kwargs):
        result = real(self, *args, **kwargs)
        if self.model.training and self.state.global_step == 2:
            result = result * float("nan") if torch.is_tensor(result) else (result[0] * float("nan"), *result[1:])
        return result

    monkeypatch.setattr(SFTTrainer, "compute_loss", diverges_at_step_3)
    out = tmp_path / "nan"
    with pytest.raises(TrainingStopped) as e:
        run(tiny_settings(small_dataset, out, "training.max_steps=4", "logging.save_steps=1", "logging.eval_steps=1",
                          "training.learning_rate=2e-3"))
    assert e.value.exit_code == 1
    assert str(e.value) == (
        f"ethsft: training loss became nan at step 3: stopped without saving, so no checkpoint holds the diverged "
        f"weights. Last good checkpoint: {out / 'checkpoint-2'}. Lower the learning rate (now 0.002; try "
        "--learning-rate 0.0005) and train again; check the data for empty or extreme samples if it persists.")
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1", "checkpoint-2"]
    assert not (out / "run_summary.json").exists()
    assert "training loss became nan at step 3" in (out / "training_logs.txt").read_text()


def test_overfitting_warning_names_early_stopping_and_fewer_epochs():
    from ethsft.training.guards import OverfitWarning

    said = []
    warn = OverfitWarning(said.append)
    args, control = SimpleNamespace(), TrainerControl()
    points = [(10, 2.0, 1.00), (20, 1.5, 0.90), (30, 1.6, 0.70), (40, 1.7, 0.50), (50, 1.8, 0.30)]
    for step, train, eval_ in points:
        state = SimpleNamespace(global_step=step, is_world_process_zero=True)
        warn.on_log(args, state, control, logs={"loss": train})
        warn.on_log(args, state, control, logs={"eval_loss": eval_})
    assert said == []  # eval loss still falling
    points = [(60, 0.2, 0.40), (70, 0.1, 0.45), (80, 0.05, 0.50)]  # three rises in a row, train falling
    for step, train, eval_ in points:
        state = SimpleNamespace(global_step=step, is_world_process_zero=True)
        warn.on_log(args, state, control, logs={"loss": train})
        warn.on_log(args, state, control, logs={"eval_loss": eval_})
    assert said == [
        "Warning: validation loss has risen for 3 evaluations in a row (0.3000 -> 0.5000, steps 50-80) while "
        "training loss fell (1.8000 -> 0.0500): the model is overfitting. Set training.early_stopping_patience "
        "(e.g. 3) to stop at the best evaluation, or train fewer epochs (training.num_train_epochs); "
        "load_best_model_at_end keeps the best checkpoint."]


def test_cuda_oom_says_the_next_setting_in_the_guides_order_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    from ethsft.training import recipe as train_mod
    from ethsft.config.schema import load_settings
    from ethsft.training.guards import TrainingStopped, oom_advice

    out = tmp_path / "oom"
    (out / "checkpoint-6").mkdir(parents=True)
    (out / "checkpoint-6" / "trainer_state.json").write_text("{}")

    class OOMTrainer:
        state = SimpleNamespace(global_step=6)

        def train(self, resume_from_checkpoint=None):
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    prepared = train_mod.Prepared(OOMTrainer(), out, None, True, {}, [], None, None, time.time())
    monkeypatch.setattr(train_mod, "build_trainer", lambda *a, **k: prepared)
    s = load_settings(None, {"training.output_dir": str(out)})  # the guide's defaults: 2048 tokens, 1 x 16, r 16
    with pytest.raises(TrainingStopped) as e:
        train_mod.run(s)
    assert str(e.value) == (
        "ethsft: CUDA out of memory at step 7.\n"
        "Try next: --set data.max_length=1024 (now 2048)\n"
        "  then: --set lora.r=8 --set lora.alpha=16 (now r=16, alpha=32)\n"
        f"The last checkpoint is kept: {out / 'checkpoint-6'}")
    assert (out / "checkpoint-6").is_dir()

    s = load_settings(None, None, ["data.max_length=512", "training.per_device_train_batch_size=4",
                                   "lora.r=8", "optimization.gradient_checkpointing=false"])
    assert oom_advice(s) == [  # max_length and r at their floor: skipped
        "--batch-size 2 --gradient-accumulation 32 (now 4 x 16: same effective batch, less memory per step)",
        "--set optimization.gradient_checkpointing=true (now false)"]
