"""Whether the fast path is on, and which of its parts a run takes: the one reading of the settings that training
(``training.recipe``), the estimate (``planning.memory``, ``planning.speed``) and TRL's arguments (``config.hf``)
share. Takes an ``ethsft.config.schema.Settings`` (read by attribute: this package sits below ``config``)."""

from __future__ import annotations


def fast_path_on(s) -> bool:
    """``optimization.fast_path``: ethsft prepares the model and the trainer (``fastpath.prepare``)."""
    return bool(s.optimization.fast_path)


def packed_rows(s) -> bool:
    """The fast path on packed rows: varlen attention per sample, and the estimate's fast-path activation model and
    GPU rate."""
    return fast_path_on(s) and bool(s.data.packing)


def graphed(s) -> bool:
    """Packed rows replayed as CUDA graphs (``optimization.cuda_graphs``; validation requires packing for it)."""
    return packed_rows(s) and bool(s.optimization.cuda_graphs)


def fitted_checkpointing(s) -> bool:
    """The fast path checkpoints only as many layers as ``optimization.vram_budget_gib`` needs (on a GPU), instead
    of TRL's every layer."""
    import torch

    return fast_path_on(s) and bool(s.optimization.vram_budget_gib) and torch.cuda.is_available()
