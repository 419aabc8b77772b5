"""What to change when a run doesn't fit this card: the first rung of the guide's ladder
(``ethsft.training.oom_ladder``, which the CUDA out-of-memory message walks too) whose estimate fits, or the
shipped preset for the card (``ethsft.planning.hardware.PRESET_CARDS``).
"""

from __future__ import annotations

import copy

from ethsft.config.schema import ConfigError, Settings
from ethsft.planning.estimate import RunEstimate, estimate_run
from ethsft.planning.hardware import GPU, PRESET_CARDS
from ethsft.planning.shapes import ModelShape, model_shape
from ethsft.planning.stats import DatasetStats
from ethsft.training.oom_ladder import format_sets, ladder

SAFE_FRACTION = 0.92  # a suggestion must leave this much of the card unused: other processes, spikes


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

    best, best_gb = None, 0
    for name, gb in PRESET_CARDS.items():  # the largest size the card holds; of one size, the first listed
        if gpu.vram_gib >= gb * 0.95 and gb > best_gb:
            best, best_gb = name, gb
    if best is None:
        return None
    if s is not None and presets.config(best).is_file():
        try:
            p = load_settings(presets.config(best))
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
    return f"configs/{best}"


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
