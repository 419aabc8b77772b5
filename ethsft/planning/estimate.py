"""Before a run: will it fit, and how long will it take? A model of a QLoRA SFT run, from the config alone.

``ethsft estimate`` and ``ethsft doctor --config`` use it. Nothing here loads weights. The parts, each in its
module of ``ethsft.planning``: ``hardware`` (the GPU table), ``shapes`` (the model's shape from its config.json),
``stats`` (the dataset's token counts), ``memory`` (peak VRAM of a micro-batch), ``speed`` (seconds per step and
FLOPs per token), this module (the whole run), ``advice`` (what to change when it doesn't fit) and ``report``.

Fitted constants come from H100 measurements of the 7B shape (benchmarks/results/calibration_h100_2026-11-25.json,
2026-11-25); ``benchmarks/estimate_vs_measured.py`` compares the model with them and prints the least-squares
values (--fit); ``benchmarks/calibrate_estimate.py`` measures a GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ethsft.config.schema import ConfigError, Settings
from ethsft.planning.hardware import GPU
from ethsft.planning.memory import MemoryEstimate, estimate_memory
from ethsft.planning.shapes import ModelShape, model_shape
from ethsft.planning.speed import TimeEstimate, estimate_eval_batch_s, estimate_step_time
from ethsft.planning.stats import DatasetStats, expected_batch_max, pack_rows

@dataclass
class RunEstimate:
    shape: ModelShape
    gpu: GPU | None
    gpu_detected: bool
    memory: MemoryEstimate
    samples: int                 # training rows (samples, or packed rows)
    micro_batches_per_epoch: int
    steps_per_epoch: int
    total_steps: int
    time: TimeEstimate | None
    train_s: float | None
    eval_s: float | None
    evals: int
    dataset: DatasetStats | None
    assumed: str                 # what the peak assumes about the longest micro-batch

    @property
    def fits(self) -> bool | None:
        return None if self.gpu is None else self.memory.card_gib <= self.gpu.vram_gib


def _steps(s: Settings, n_rows: int) -> tuple[int, int, int]:
    micro = s.training.per_device_train_batch_size
    accum = s.training.gradient_accumulation_steps
    batches = math.ceil(n_rows / micro)
    per_epoch = max(batches // accum + int(batches % accum > 0), 1)
    total = s.training.max_steps if s.training.max_steps > 0 else math.ceil(s.training.num_train_epochs * per_epoch)
    return batches, per_epoch, total


def estimate_run(s: Settings, gpu: GPU | None = None, stats: DatasetStats | None = None,
                 shape: ModelShape | None = None, detected: bool = False) -> RunEstimate:
    """Memory and time of the run ``s`` describes; without ``stats``, every micro-batch is batch x max_length."""
    shape = shape or model_shape(s)
    micro = s.training.per_device_train_batch_size
    L = s.data.max_length
    if stats is not None and "train" in stats.splits:
        train = stats.splits["train"]
        lengths = train.trained_lengths()
        if not lengths:
            raise ConfigError(f"train: all {train.count} samples are longer than data.max_length={L} and "
                              "data.overlong is 'drop'")
        comp = [min(c, n) for c, n in zip(train.completion, train.lengths)]
        completion_frac = sum(comp) / max(1, sum(train.lengths))
        if s.data.packing:
            rows = pack_rows(lengths, L)
            peak_rows, peak_len = micro, max(rows)
            tokens_micro = micro * sum(rows) / len(rows)
            row_len = sum(lengths) / len(lengths)  # attention spans a sample, not the packed row
            n_rows = len(rows)
            assumed = f"{micro} packed row(s) of up to {max(rows)} tokens"
        else:
            peak_rows, peak_len = micro, max(lengths)
            row_len = expected_batch_max(lengths, micro)
            tokens_micro = micro * row_len
            n_rows = len(lengths)
            assumed = f"{micro} x {max(lengths)} tokens (the longest sample, padded batch)"
    else:
        completion_frac = 0.3
        peak_rows, peak_len, row_len, tokens_micro, n_rows = micro, L, L, micro * L, 0
        assumed = f"{micro} x {L} tokens (batch x max_length, worst case)"
    memory = estimate_memory(s, shape, peak_len, peak_rows, completion_frac)
    batches, per_epoch, total = _steps(s, n_rows) if n_rows else (0, 0, s.training.max_steps if s.training.max_steps > 0 else 0)
    time = train_s = eval_s = None
    evals = 0
    if gpu is not None:
        time = estimate_step_time(s, shape, gpu, tokens_micro, row_len, completion_frac, memory.checkpointed)
        if total:
            train_s = time.step_s * total
            if s.logging.eval_strategy == "steps" and stats is not None and "validation" in stats.splits:
                evals = total // s.logging.eval_steps + 1  # + the final evaluation
            elif s.logging.eval_strategy == "epoch" and stats is not None and "validation" in stats.splits:
                evals = math.ceil(s.training.num_train_epochs) + 1
            if evals:
                val = stats.splits["validation"].trained_lengths()
                eb = s.training.per_device_eval_batch_size
                batch_len = expected_batch_max(val, eb)
                batches = math.ceil(len(val) / eb)
                eval_s = evals * batches * estimate_eval_batch_s(s, shape, gpu, batch_len * eb, completion_frac)
    return RunEstimate(shape, gpu, detected, memory, n_rows, batches, per_epoch, total, time, train_s, eval_s,
                       evals, stats, assumed)
