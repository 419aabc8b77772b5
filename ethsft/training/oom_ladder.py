"""What to change when a run doesn't fit: one ladder, in the guide's order, that both the CUDA out-of-memory
message (``ethsft.training.guards.oom_message``) and the estimate's "won't fit: try ..." (``ethsft.planning.advice``)
walk, so a user hears the same advice before a run and after it fails. It lives with training, below planning, so a
training run words its OOM message without importing the estimator.

The order is the guide's: sequence length, then a smaller micro batch with more accumulation (same effective
batch), then LoRA rank, then gradient checkpointing; each setting stops at its floor (``FLOORS``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ethsft.config.schema import Settings

MAX_LENGTH_FLOOR = 512
RANK_FLOOR = 8
# every rung at its floor, as the OOM message says it
FLOORS = f"max_length {MAX_LENGTH_FLOOR}, micro batch 1, LoRA r {RANK_FLOOR}, gradient checkpointing on"
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
