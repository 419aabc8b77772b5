"""The fast path's entry points (``optimization.fast_path``): changes that make training faster without changing
what is learned. ``prepare_model`` runs at load, ``prepare_trainer`` once the LoRA model exists
(``ethsft.training.recipe``); ``compile_layers`` (``optimization.compile``) ``torch.compile``s each decoder layer,
the 4-bit weights dequantised by tensor ops inside it (``ethsft.fastpath.nf4``: no bitsandbytes host cost per
matmul). The changes themselves live by job: ``runtime`` (process-wide switches), ``attention`` (``ethsft_varlen``
for packed rows), ``lean`` (SwiGLU MLP and LoRA autograd), ``checkpointing`` (fitted to a budget), ``nf4`` and
``graphs`` (CUDA-graphed micro-batches)."""

from __future__ import annotations

import torch

from ethsft.fastpath.attention import use_varlen_attention, varlen_available
from ethsft.fastpath.checkpointing import decoder_layers, fit_checkpointing
from ethsft.fastpath.lean import lean_lora_add, lean_lora_dropout, lean_mlp
from ethsft.fastpath.runtime import configure_runtime


def compile_settings() -> None:
    """Process-wide torch.compile settings of the compiled layers. Common-subexpression elimination off: with it,
    AOTAutograd merges backward's dequantisation of a 4-bit weight (``ethsft.fastpath.nf4``) with forward's and
    keeps the bf16 weight from forward to backward, ~0.4 GiB per 7B layer; without it only the 4-bit tensors are
    kept."""
    import torch._dynamo
    import torch._functorch.config

    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    torch._functorch.config.cse = False


def compile_layers(model) -> int:
    """``torch.compile`` every decoder layer in place (regional compilation: one graph serves all layers)."""
    compile_settings()
    layers = decoder_layers(model)
    for layer in layers:
        layer.compile()
    return len(layers)


def prepare_trainer(trainer, budget_gib: float | None, compile: bool = False, graph_rows: int | None = None) -> dict:
    """Fast-path changes once the trainer holds the LoRA model: Liger now (``train()`` would apply it later, after
    the probes), lean LoRA dropout (or compiled layers, which trace peft's own dropout), then checkpointing fitted
    to ``budget_gib`` (None: leave it as configured), then CUDA-graphed micro-batches of ``graph_rows`` tokens
    (``ethsft.fastpath.graphs``; None: none)."""
    base = getattr(trainer.model, "get_base_model", lambda: trainer.model)()
    done = dict(getattr(base, "ethsft_prepared", {}))  # what prepare_model did at load
    graph_rows = graph_rows if torch.cuda.is_available() else None
    if graph_rows:  # decided first: graphs change how dropout masks and 4-bit weights are handled below
        from ethsft.fastpath.graphs import unsupported

        deepspeed = bool(getattr(trainer, "is_deepspeed_enabled", False))
        reason = unsupported(trainer.model, trainer.args.world_size, deepspeed)
        if reason:
            done["cuda_graphs_off"] = reason
            graph_rows = None
    if trainer.args.use_liger_kernel:
        from transformers.integrations.liger import apply_liger_kernel

        apply_liger_kernel(trainer.model, trainer.args.liger_kernel_config)
        done["liger_applied"] = True
    if compile or graph_rows:
        from ethsft.fastpath.nf4 import use_tensor_dequant

        # traced into the compiled layers, or compiled alone (one kernel per weight) under CUDA graphs
        done["tensor_dequant_linears"] = use_tensor_dequant(trainer.model)
    if compile:
        done["compiled_layers"] = compile_layers(trainer.model)
    else:
        done["lean_lora_dropout"] = lean_lora_dropout(trainer.model, device_masks=bool(graph_rows))
        done["lean_lora_add"] = lean_lora_add(trainer.model)
    if budget_gib:
        done["checkpointing"] = fit_checkpointing(trainer, budget_gib)
    if graph_rows:
        trainer.use_cuda_graphs(graph_rows)  # training.trainer.IntentSFTTrainer holds the hooks
        done["cuda_graph_rows"] = graph_rows
    trainer.ethsft_fast_path = done
    return done


def prepare_model(model, attention: str = "varlen", liger: bool = False, compile: bool = False) -> dict:
    """Fast-path model changes after loading (before the trainer wraps it); returns what was done."""
    done = configure_runtime()
    if attention == "varlen":
        done["attn_implementation"] = use_varlen_attention(model)
        done["varlen_kernel"] = varlen_available()
    if not liger and not compile:  # compiled layers fuse SwiGLU themselves
        done["lean_mlp_layers"] = lean_mlp(model)
    model.ethsft_prepared = done
    return done
