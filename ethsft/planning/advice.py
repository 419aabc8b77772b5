"""What to change when a run doesn't fit: one ladder, in the guide's order, that both the CUDA out-of-memory
message (``ethsft.training.guards.oom_advice``) and the estimate's "won't fit — try ..." walk, so a user hears the
same advice before a run and after it fails.

The order is the guide's: sequence length, then a smaller micro batch with more accumulation (same effective
batch), then LoRA rank, then gradient checkpointing; each setting stops at its floor (max_length 512, micro batch
1, r 8, checkpointing on).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

from ethsft.config.schema import ConfigError, Settings
from ethsft.planning.estimate import RunEstimate, estimate_run
from ethsft.planning.hardware import GPU
from ethsft.planning.shapes import ModelShape, model_shape
from ethsft.planning.stats import DatasetStats

MAX_LENGTH_FLOOR = 512
RANK_FLOOR = 8
SAFE_FRACTION = 0.92  # a suggestion must leave this much of the card unused: other processes, spikes
PRESETS = [("configs/8gb.yaml", 8), ("configs/training_config.yaml", 12), ("configs/16gb.yaml", 16),
           ("configs/24gb.yaml", 24), ("configs/80gb.yaml", 80)]
# `ethsft train`'s own flags for settings it has one for (the OOM message is read where train ran)
TRAIN_FLAGS = {"training.per_device_train_batch_size": "--batch-size",
               "training.gradient_accumulation_steps": "--gradient-accumulation"}


@dataclass(frozen=True)
class Rung:
    """One setting to lower: its ``options`` as ``--set`` changes, mildest first, and what it is ``now``."""
    options: list[dict]
    now: str


def _halvings(value: int, floor: int) -> list[int]:
    out = []
    while value > floor:
        value = max(floor, value // 2)
        out.append(value)
    return out


def ladder(s: Settings) -> list[Rung]:
    """The rungs of the guide's order that ``s`` can still take; settings at their floor are left out."""
    rungs = []
    if s.data.max_length > MAX_LENGTH_FLOOR:
        rungs.append(Rung([{"data.max_length": n} for n in _halvings(s.data.max_length, MAX_LENGTH_FLOOR)],
                          f"now {s.data.max_length}"))
    micro, accum = s.training.per_device_train_batch_size, s.training.gradient_accumulation_steps
    if micro > 1:
        rungs.append(Rung([{"training.per_device_train_batch_size": m,
                            "training.gradient_accumulation_steps": accum * micro // m} for m in _halvings(micro, 1)],
                          f"now {micro} x {accum}: same effective batch, less memory per step"))
    r, alpha = s.lora.r, s.lora.alpha
    if r > RANK_FLOOR:  # alpha follows r: the adapters' scale alpha / r stays
        rungs.append(Rung([{"lora.r": n, "lora.alpha": max(1, alpha * n // r)} for n in _halvings(r, RANK_FLOOR)],
                          f"now r={r}, alpha={alpha}"))
    if not s.optimization.gradient_checkpointing:
        rungs.append(Rung([{"optimization.gradient_checkpointing": True}], "now false"))
    return rungs


def format_sets(changes: dict, train_flags: bool = False) -> str:
    """``changes`` as command-line arguments: ``--set key=value``, or ``ethsft train``'s own flag where it has one
    and ``train_flags`` asks for them."""
    def val(v):
        if isinstance(v, bool):
            return str(v).lower()
        if isinstance(v, list):
            return "[" + ",".join(v) + "]"
        return str(v)

    return " ".join(f"{TRAIN_FLAGS[k]} {val(v)}" if train_flags and k in TRAIN_FLAGS else f"--set {k}={val(v)}"
                    for k, v in changes.items())


def _with(s: Settings, changes: dict) -> Settings:
    s2 = copy.deepcopy(s)
    for dotted, value in changes.items():
        section, key = dotted.split(".")
        setattr(getattr(s2, section), key, value)
    return s2


def _card_need(s: Settings, shape: ModelShape, stats: DatasetStats | None) -> float:
    return estimate_run(s, None, stats, shape).memory.card_gib


def suggest(s: Settings, gpu: GPU, shape: ModelShape | None = None, stats: DatasetStats | None = None
            ) -> tuple[dict, float] | None:
    """The first change down the ladder (as --set keys) that makes ``s`` fit ``gpu``, with what it then needs: each
    rung's options mildest first, a rung taken to its floor before the next. None if the whole ladder doesn't fit."""
    shape = shape or model_shape(s)
    limit = gpu.vram_gib * SAFE_FRACTION
    changes: dict = {}
    for rung in ladder(s):
        for option in rung.options:
            trial = {**changes, **option}
            need = _card_need(_with(s, trial), shape, stats)
            if need <= limit:
                return trial, need
        changes = trial
    return None


_PRESET_KEYS = ("model.base_model", "lora.r", "lora.target_modules", "data.max_length", "data.packing",
                "training.per_device_train_batch_size", "optimization.gradient_checkpointing")


def preset_for(gpu: GPU, s: Settings | None = None, stats: DatasetStats | None = None) -> str | None:
    """The guide's preset for a card of this size (the largest class it holds) when it differs from ``s`` and
    fits by this model; None otherwise."""
    from ethsft.config import presets
    from ethsft.config.schema import load_settings

    best = None
    for path, gb in PRESETS:
        if gpu.vram_gib >= gb * 0.95:
            best = path
    if best is None:
        return None
    if s is not None and presets.config(Path(best).name).is_file():
        try:
            p = load_settings(presets.config(Path(best).name))
        except ConfigError:
            return None

        def get(x, k):
            section, key = k.split(".")
            return getattr(getattr(x, section), key)

        if all(get(p, k) == get(s, k) for k in _PRESET_KEYS):
            return None
        try:
            if _card_need(p, model_shape(p), stats) > gpu.vram_gib:
                return None
        except ConfigError:
            return None
    return best


def fit_verdict(s: Settings, gpu: GPU, est: RunEstimate) -> str:
    """'fits (...)' or 'won't fit — try <settings>' for ``s`` on ``gpu``."""
    need = est.memory.card_gib
    if need <= gpu.vram_gib:
        tight = ", tight: other processes on the card may tip it over" if need > gpu.vram_gib * SAFE_FRACTION else ""
        return f"fits: ~{need:.1f} GB of {gpu.vram_gib:.1f} GB ({gpu.vram_gib - need:.1f} GB to spare{tight})"
    found = suggest(s, gpu, est.shape, est.dataset)
    head = f"won't fit: needs ~{need:.1f} GB of {gpu.vram_gib:.1f} GB"
    if found is None:
        return f"{head} — no setting of this model fits; try a smaller base model or a larger GPU"
    changes, after = found
    line = f"{head} — try {format_sets(changes)} (~{after:.1f} GB)"
    preset = preset_for(gpu, s, est.dataset)
    if preset:
        line += f", or the {preset} preset"
    return line
