"""Activation checkpointing sized to a memory budget: ``set_checkpointed_layers`` checkpoints n evenly spread
decoder layers (``spread``); ``fit_checkpointing`` measures (two probe micro-batches at the real row length) what a
checkpointed and an uncheckpointed layer cost and checkpoints as few layers as fit the budget. ``FIT_MARGIN_GIB`` is
also what ``ethsft.planning.estimate`` predicts with."""

from __future__ import annotations

import math
from functools import partial

import torch

from ethsft.units import GiB

# fitted checkpointing aims this far under the budget: the probes' error (H100, 2048-token rows, compiled layers:
# predicted 11.23 / 11.44 / 10.40 GiB, measured 11.25 / 11.46 / 10.19 allocated) plus the allocator's slack
# (reserved ~0.4 above allocated)
FIT_MARGIN_GIB = 0.5


def decoder_layers(model) -> list:
    from transformers.modeling_layers import GradientCheckpointingLayer

    return [m for m in model.modules() if isinstance(m, GradientCheckpointingLayer)]


def spread(n_total: int, n_pick: int) -> list[int]:
    """``n_pick`` indices evenly spread over range(n_total)."""
    if n_pick <= 0:
        return []
    if n_pick >= n_total:
        return list(range(n_total))
    return sorted({min(n_total - 1, int(math.floor((i + 0.5) * n_total / n_pick))) for i in range(n_pick)})


def set_checkpointed_layers(model, n_ckpt: int, offload: bool = False) -> list[int]:
    """Checkpoint ``n_ckpt`` decoder layers (evenly spread, non-reentrant), the rest keep their activations."""
    from torch.utils.checkpoint import checkpoint

    layers = decoder_layers(model)
    chosen = set(spread(len(layers), n_ckpt))
    func = partial(checkpoint, use_reentrant=False)
    if offload:
        def func(fn, *args, **kwargs):  # noqa: F811 - saved inputs of checkpointed layers go to pinned host memory
            with torch.autograd.graph.save_on_cpu(pin_memory=True):
                return checkpoint(fn, *args, use_reentrant=False, **kwargs)
    for i, layer in enumerate(layers):
        layer.gradient_checkpointing = i in chosen
        layer._gradient_checkpointing_func = func
    base = getattr(model, "get_base_model", lambda: model)()
    if hasattr(base, "model"):
        base.model.gradient_checkpointing = bool(chosen)
    return sorted(chosen)


def _probe_peak(trainer, inputs, n_ckpt: int) -> int:
    model = trainer.model
    set_checkpointed_layers(model, n_ckpt)
    model.train()
    model.zero_grad(set_to_none=True)
    torch.cuda.synchronize()
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    with trainer.compute_loss_context_manager(), trainer.autocast_smart_context_manager():
        loss = trainer.compute_loss(model, inputs)
    loss.backward()
    torch.cuda.synchronize()
    peak = torch.cuda.max_memory_allocated()
    model.zero_grad(set_to_none=True)
    del loss
    return peak


def fit_checkpointing(trainer, budget_gib: float, margin_gib: float = FIT_MARGIN_GIB, probe_layers: int = 4) -> dict:
    """Checkpoint as few decoder layers as keep the peak under ``budget_gib``, measured on this GPU: one probe
    micro-batch (the longest packed row) with every layer checkpointed, one with ``probe_layers`` fewer."""
    layers = decoder_layers(trainer.model)
    n = len(layers)
    plan = {"layers": n, "budget_gib": budget_gib, "margin_gib": margin_gib}
    if not torch.cuda.is_available():
        plan.update(checkpointed=n, note="no CUDA: every layer checkpointed")
        set_checkpointed_layers(trainer.model, n)
        return plan
    loader = trainer.get_train_dataloader()
    best = None
    for i, batch in enumerate(loader):  # the longest of the first few rows
        size = batch["input_ids"].numel()
        if best is None or size > best["input_ids"].numel():
            best = batch
        if i >= 3:
            break
    inputs = trainer._prepare_inputs(best)
    # optimizer state (paged AdamW 32-bit: 8 bytes per LoRA parameter) and LoRA grads live beside the peak
    lora = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)
    extra = lora * (8 + 4)
    p_all = _probe_peak(trainer, inputs, n)
    k = min(probe_layers, n)
    p_less = _probe_peak(trainer, inputs, n - k)
    per_layer = max((p_less - p_all) / k, 1)
    room = budget_gib * GiB - margin_gib * GiB - p_all - extra
    free = max(0, min(n, int(room // per_layer)))
    plan.update(tokens=int(inputs["input_ids"].numel()), peak_all_ckpt_gib=p_all / GiB,
                per_uncheckpointed_layer_gib=per_layer / GiB, checkpointed=n - free,
                predicted_peak_gib=(p_all + extra + free * per_layer) / GiB)
    plan["checkpointed_layers"] = set_checkpointed_layers(trainer.model, n - free)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return plan
