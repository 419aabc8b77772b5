"""SIGTERM/SIGINT during evaluation and generation (ethsft/evaluation/stopping.py): a first signal stops within a
generate or evaluation step instead of after the whole pass. In training, the last completed step is checkpointed
and the resume command printed; standalone `ethsft evaluate` writes nothing. Tiny 4-bit model on CPU."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from transformers import StoppingCriteria, StoppingCriteriaList, TrainerCallback

from conftest import REPO, make_record, tiny_settings, wait_for, write_split

STOP_WITHIN_S = 10


def dataset(root: Path, validation: int, train: int = 16) -> Path:
    rng = random.Random(0)
    root.mkdir(parents=True)
    for split, n in (("train", train), ("validation", validation)):
        write_split(root / f"{split}.jsonl", [make_record(rng) for _ in range(n)])
    return root


def start(cmd: list[str], tmp_path: Path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    log = tmp_path / "proc.log"
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT), log


def stop_and_time(proc, sig) -> tuple[int, float]:
    sent = time.time()
    proc.send_signal(sig)
    try:
        code = proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    return code, time.time() - sent


# --------------------------------------------------------------------------------------------------------------
# `ethsft train`: a signal in the middle of an in-training evaluation


@pytest.mark.slow  # subprocesses
def test_sigterm_during_training_evaluation_checkpoints_the_step_and_exits_promptly(tmp_path):
    # 1,000 validation records: the evaluation at step 2 takes ~25 s uninterrupted on one CPU thread
    data, out = dataset(tmp_path / "data", validation=1000), tmp_path / "run"
    cmd = [sys.executable, "-m", "ethsft", "train", "--config", "configs/tiny_cpu.yaml", "--dataset", str(data),
           "--output", str(out)]
    for item in ("training.max_steps=4", "logging.logging_steps=1", "logging.eval_steps=2",
                 "logging.save_steps=100"):  # no checkpoint but the one the signal makes
        cmd += ["--set", item]
    proc, log = start(cmd, tmp_path)
    logs = out / "training_logs.txt"
    # step 2's log line is written just before its evaluation starts
    wait_for(lambda: logs.exists() and "Step 2/4" in logs.read_text(), proc, "step 2")
    time.sleep(1.0)
    code, seconds = stop_and_time(proc, signal.SIGTERM)
    text = log.read_text()
    assert code == 143, text[-3000:]
    assert seconds < STOP_WITHIN_S, (seconds, text[-3000:])
    assert ("ethsft: SIGTERM received during evaluation: stopping it, then saving a checkpoint of the last "
            "completed step and stopping (send SIGTERM again to exit at once)") in text

    ckpt = out / "checkpoint-2"
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2"]  # complete: no .tmp- left
    for name in ("adapter_model.safetensors", "adapter_config.json", "trainer_state.json", "optimizer.pt",
                 "scheduler.pt"):
        assert (ckpt / name).is_file(), name
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["global_step"] == 2
    assert not any("eval_loss" in h for h in state["log_history"])  # the cut-off evaluation is not recorded
    expected = (f"ethsft: stopped by SIGTERM during the evaluation after step 2; checkpoint saved to {ckpt}; "
                f"resume with: python -m ethsft train --config configs/tiny_cpu.yaml --dataset {data} --output {out} ")
    assert expected in text and text.rstrip().endswith("--resume-from-checkpoint latest"), text[-2000:]
    assert expected in logs.read_text()  # training_logs.txt has it too
    assert not (out / "run_summary.json").exists() and not (out / "adapter_model.safetensors").exists()

    from ethsft.training.outputs import find_resume_checkpoint

    assert find_resume_checkpoint(out, "latest") == ckpt


class SignalAtEvalBatch(TrainerCallback):
    """Sends this process a real SIGTERM after evaluation batch ``at`` (-1: the last, so the evaluation's
    intent-accuracy generation is the first to look at it)."""

    def __init__(self, at: int):
        self.at = at
        self.seen = 0

    def on_prediction_step(self, args, state, control, eval_dataloader=None, **kwargs):
        self.seen += 1
        if self.seen == (len(eval_dataloader) if self.at == -1 else self.at):
            os.kill(os.getpid(), signal.SIGTERM)  # handled by the run's StopGuard, installed around training


def test_signal_during_intent_generation_stops_it_and_checkpoints_the_step(small_dataset, tmp_path):
    from ethsft.training.guards import TrainingStopped
    from ethsft.training.recipe import run

    out = tmp_path / "gen"
    s = tiny_settings(small_dataset, out, "training.max_steps=3", "logging.eval_steps=1", "logging.save_steps=100",
                      "logging.eval_accuracy_samples=8", "training.per_device_eval_batch_size=4")
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(TrainingStopped) as stopped:
        run(s, callbacks=[SignalAtEvalBatch(-1)])
    assert signal.getsignal(signal.SIGTERM) == before  # handlers given back
    assert stopped.value.exit_code == 143
    ckpt = out / "checkpoint-1"
    assert str(stopped.value).startswith(f"ethsft: stopped by SIGTERM during the evaluation after step 1; "
                                         f"checkpoint saved to {ckpt}; resume with: ")
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-1"]
    state = json.loads((ckpt / "trainer_state.json").read_text())
    assert state["global_step"] == 1 and not any("eval_loss" in h for h in state["log_history"])


def test_signal_during_the_final_evaluation_keeps_the_adapter_and_says_so(small_dataset, tmp_path):
    from ethsft.training.guards import TrainingStopped
    from ethsft.training.recipe import run

    out = tmp_path / "final"
    s = tiny_settings(small_dataset, out, "training.max_steps=1", "logging.eval_strategy=no",
                      "logging.load_best_model_at_end=false", "training.per_device_eval_batch_size=2")
    with pytest.raises(TrainingStopped) as stopped:
        run(s, callbacks=[SignalAtEvalBatch(1)])  # the only evaluation: the final one
    assert stopped.value.exit_code == 143
    assert str(stopped.value) == (
        f"ethsft: stopped by SIGTERM during the final evaluation; training finished at step 1 and the adapter is "
        f"saved in {out}/, but run_summary.json was not written; score the adapter with: ethsft evaluate --model "
        f"{out} --dataset {small_dataset}")
    assert (out / "adapter_model.safetensors").is_file() and not (out / "run_summary.json").exists()


# --------------------------------------------------------------------------------------------------------------
# generation itself, and standalone `ethsft evaluate`


class SignalInSecondBatch(StoppingCriteria):
    """Delivers a first SIGINT to ``stop`` at the 5th token of the second batch; counts the steps after it."""

    def __init__(self, stop):
        self.stop, self.batch, self.step, self.length, self.after = stop, 0, 0, 0, 0

    def __call__(self, input_ids, scores, **kwargs):
        if input_ids.shape[1] <= self.length:  # prompts are batched longest first: a shorter row starts a batch
            self.batch, self.step = self.batch + 1, 0
        self.batch, self.length, self.step = max(self.batch, 1), input_ids.shape[1], self.step + 1
        if self.stop.requested():
            self.after += 1
        elif self.batch == 2 and self.step == 5:
            self.stop.handle(signal.SIGINT)
        return input_ids.new_zeros(input_ids.shape[0], dtype=bool)


def test_generation_stops_at_the_next_token_and_returns_nothing_partial(tiny_model_path):
    from ethsft.data.formatting import prompt_messages
    from ethsft.evaluation.generation import generate_texts
    from ethsft.evaluation.stopping import SignalStop, StopRequested
    from ethsft.inference.loading import load_for_inference

    loaded = load_for_inference("embedded:tiny-mistral")
    rng = random.Random(1)
    messages = [prompt_messages(make_record(rng)) for _ in range(9)]
    exits, lines = [], []
    stop = SignalStop(exit_fn=exits.append, stream=type("S", (), {"write": lines.append, "flush": lambda s: None})())
    spy = SignalInSecondBatch(stop)
    with pytest.raises(StopRequested) as stopped:  # 3 batches of 3 answers of up to 100 tokens
        generate_texts(loaded.model, loaded.tokenizer, messages, 100, 3, stop=stop,
                       stopping_criteria=StoppingCriteriaList([spy]))
    assert (stopped.value.done, stopped.value.total) == (3, 9)  # the cut batch is not counted, nor returned
    assert spy.batch == 2 and spy.after <= 1  # generate ended at the next token at the latest; no third batch
    assert "".join(lines) == "ethsft: SIGINT received: stopping generation (send SIGINT again to exit at once)\n"
    stop.handle(signal.SIGINT)
    assert exits == [130] and lines[-2] == "ethsft: second SIGINT: exiting now"


@pytest.mark.slow  # subprocesses
def test_sigint_during_ethsft_evaluate_stops_promptly_and_writes_nothing(tmp_path):
    data = tmp_path / "test.jsonl"
    rng = random.Random(2)
    write_split(data, [make_record(rng) for _ in range(2000)])  # minutes of generation for the tiny model
    out = tmp_path / "eval"
    proc, log = start([sys.executable, "-m", "ethsft", "evaluate", "--model", "embedded:tiny-mistral",
                       "--dataset", str(data), "--output", str(out), "--batch-size", "8",
                       "--max-new-tokens", "64"], tmp_path)
    wait_for(lambda: "evaluating:" in log.read_text(), proc, "generation")  # the progress bar has started
    time.sleep(1.0)
    code, seconds = stop_and_time(proc, signal.SIGINT)
    text = log.read_text()
    assert code == 130, text[-3000:]
    assert seconds < STOP_WITHIN_S, (seconds, text[-3000:])
    assert "ethsft: SIGINT received: stopping generation (send SIGINT again to exit at once)" in text
    last = text.rstrip().splitlines()[-1]
    prefix, _, rest = last.partition(" after ")
    assert prefix == "ethsft: evaluation stopped by SIGINT", last
    done, _, tail = rest.partition(" of 2000 samples; ")
    assert done.isdigit() and int(done) < 2000 and int(done) % 8 == 0, last
    assert tail == (f"nothing written to {out}/ (predictions.jsonl and metrics.json are written only for a "
                    "complete evaluation)"), last
    assert "Traceback" not in text and "KeyboardInterrupt" not in text
    assert not (out / "metrics.json").exists() and not (out / "predictions.jsonl").exists()
