"""ethsft's fast path (``optimization.fast_path``): changes that make training faster without changing what is
learned. ``prepare_model`` runs at load, ``prepare_trainer`` once the LoRA model exists (``ethsft.train``).

* ``configure_runtime``: cuDNN SDPA off (it builds a new execution plan for every new sequence shape: stalls);
  on CPU, freed memory stays in the heap (``keep_freed_memory``).
* ``VARLEN`` attention (``ethsft_varlen``): packed rows go through PyTorch's bundled FlashAttention varlen kernel
  (``aten._flash_attention_*``, grouped k/v heads passed as they are) using the ``cu_seq_lens_q`` TRL's
  padding-free collator computes; each sample attends only to itself (causal), no L x L mask, no host sync per
  layer. Without CUDA a per-sample SDPA loop gives the same result; unpacked/padded batches go to SDPA.
* ``lean_lora_dropout``: each adapter's dropout folded into its ``lora_A`` matmul, the mask drawn again in
  backward from a seed: no dropped copy or mask kept, and q and v share one saved input.
* ``lean_lora_add``: each LoRA update added inside one ``addmm`` (no copy of the base output, no separate scale
  and add passes).
* ``lean_mlp``: SwiGLU as one autograd function that keeps gate and up outputs only (recomputes silu and the
  product in backward): ~half the MLP's saved activations, same math. Skipped where Liger is used (it fuses it).
* ``compile_layers`` (``optimization.compile``): ``torch.compile`` per decoder layer, the 4-bit weights
  dequantised by tensor ops inside it (``ethsft.nf4``: no bitsandbytes host cost per matmul).
* Checkpointing sized to a memory budget: ``set_checkpointed_layers`` checkpoints n evenly spread decoder layers;
  ``fit_checkpointing`` measures (two probe micro-batches at the real row length) what a checkpointed and an
  uncheckpointed layer cost and checkpoints as few layers as fit the budget.
"""

from __future__ import annotations

import math
from functools import partial

import torch

VARLEN = "ethsft_varlen"
GIB = 2**30
# fitted checkpointing aims this far under the budget: the probes' error (H100, 2048-token rows, compiled layers:
# predicted 11.23 / 11.44 / 10.40 GiB, measured 11.25 / 11.46 / 10.19 allocated) plus the allocator's slack
# (reserved ~0.4 above allocated)
FIT_MARGIN_GIB = 0.5


# --------------------------------------------------------------------------------------------------------------
# runtime
def configure_runtime() -> dict:
    """Process-wide switches of the fast path; returns what was set."""
    done = {}
    if torch.cuda.is_available():
        torch.backends.cuda.enable_cudnn_sdp(False)  # per-shape plan rebuilds stall variable-length training
        done["cudnn_sdp"] = False
    else:
        done["heap_keeps_freed_memory"] = keep_freed_memory()
    return done


def keep_freed_memory() -> bool:
    """CPU training frees and allocates the same large buffers (logits over 32000 tokens) every step. glibc hands
    each back to the OS (munmap) and page-faults it in again: half of every step was kernel time on 2 cores. Keep
    freed memory in the process heap instead (glibc only; elsewhere nothing changes)."""
    import ctypes

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    m_trim_threshold, m_mmap_max = -1, -4
    return bool(libc.mallopt(m_mmap_max, 0)) and bool(libc.mallopt(m_trim_threshold, 2**31 - 1))


def liger_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("liger_kernel") is not None


def varlen_available() -> bool:
    global _VARLEN_OK
    if _VARLEN_OK is None:
        try:
            from torch.nn.attention import varlen
        except ImportError:
            varlen = None
        _VARLEN_OK = torch.cuda.is_available() and hasattr(varlen, "varlen_attn")
    return _VARLEN_OK


_VARLEN_OK = None


# --------------------------------------------------------------------------------------------------------------
# attention for packed rows
def _segments(cu: torch.Tensor) -> list[tuple[int, int]]:
    bounds = cu.tolist()
    return [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]


def packed_sdpa_loop(query, key, value, cu, scaling=None, sliding_window=None):
    """Reference/fallback: (1,H,L,D) q and (1,Hkv,L,D) k/v, causal attention inside each [cu[i], cu[i+1]) only.
    Returns (1, L, H, D)."""
    import torch.nn.functional as F

    groups = query.shape[1] // key.shape[1]
    if groups > 1:
        key = key.repeat_interleave(groups, dim=1)
        value = value.repeat_interleave(groups, dim=1)
    outs = []
    for a, b in _segments(cu):
        q, k, v = query[:, :, a:b], key[:, :, a:b], value[:, :, a:b]
        n = b - a
        if sliding_window and n > sliding_window:
            i = torch.arange(n, device=q.device)
            mask = (i[:, None] >= i[None, :]) & (i[:, None] - i[None, :] < sliding_window)
            o = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scaling)
        else:
            o = F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scaling)
        outs.append(o)
    out = torch.cat(outs, dim=2)
    if out.shape[2] < query.shape[2]:  # trailing padding (pad_to_multiple_of): zeros, masked from the loss anyway
        out = torch.nn.functional.pad(out, (0, 0, 0, query.shape[2] - out.shape[2]))
    return out.transpose(1, 2).contiguous()


_VARLEN_PARAMS: frozenset = frozenset()  # varlen_attn's parameter names, read once by register_attention()
_FLASH_DIRECT = hasattr(torch.ops.aten, "_flash_attention_forward") and torch.cuda.is_available()


def _cu_meta(cu: torch.Tensor, device) -> tuple[torch.Tensor, int, int]:
    """(``cu`` as int32 on ``device``, its last bound, the longest segment), worked out once per batch: every
    layer gets the same tensor, and reading it in each would stop the host until the GPU catches up (a sync per
    layer: host and GPU work then add up instead of overlapping)."""
    meta = getattr(cu, "_ethsft_varlen", None)
    if meta is None:
        on_device = cu.to(device=device, dtype=torch.int32)
        bounds = on_device.cpu()
        meta = (on_device, int(bounds[-1]), int(bounds.diff().max()) if len(bounds) > 1 else 0)
        cu._ethsft_varlen = meta
    return meta


class _FlashVarlen(torch.autograd.Function):
    """Causal FlashAttention over packed samples through PyTorch's bundled kernel (``aten._flash_attention_*``),
    grouped-query heads passed as they are: FlashAttention reads each key/value head for its group of query heads,
    so nothing is repeated and backward keeps (L, Hkv, D) keys and values, not (L, H, D) copies."""

    @staticmethod
    def forward(ctx, q, k, v, cu, max_len, scale, window_left):
        out, lse, seed, offset, _ = torch.ops.aten._flash_attention_forward(
            q, k, v, cu, cu, max_len, max_len, 0.0, True, False, scale=scale,
            window_size_left=window_left, window_size_right=0 if window_left >= 0 else -1)
        ctx.save_for_backward(q, k, v, out, lse, cu, seed, offset)
        ctx.max_len, ctx.scale, ctx.window_left = max_len, scale, window_left
        return out

    @staticmethod
    def backward(ctx, dout):
        q, k, v, out, lse, cu, seed, offset = ctx.saved_tensors
        left = ctx.window_left
        dq, dk, dv = torch.ops.aten._flash_attention_backward(
            dout.contiguous(), q, k, v, out, lse, cu, cu, ctx.max_len, ctx.max_len, 0.0, True, seed, offset,
            scale=ctx.scale, window_size_left=left, window_size_right=0 if left >= 0 else -1)
        return dq, dk, dv, None, None, None, None


def flash_varlen(q, k, v, cu, max_len: int, scale: float | None = None, sliding_window: int | None = None):
    """(L, H, D) q and (L, Hkv, D) k/v of packed samples bounded by int32 ``cu`` -> (L, H, D), causal."""
    left = sliding_window - 1 if sliding_window and max_len > sliding_window else -1
    scale = scale if scale is not None else q.shape[-1] ** -0.5
    return _FlashVarlen.apply(q.contiguous(), k.contiguous(), v.contiguous(), cu, int(max_len), scale, left)


def _varlen(query, key, value, cu, max_len, scaling, sliding_window):
    q = query[0].transpose(0, 1)  # (L, H, D)
    k = key[0].transpose(0, 1)
    v = value[0].transpose(0, 1)
    if torch.compiler.is_compiling() or torch.cuda.is_current_stream_capturing():
        # traced or captured: no host reads; TRL's padding-free rows (and graphed rows) end at the last bound
        cu, total = cu.to(device=q.device, dtype=torch.int32), q.shape[0]
    else:
        cu, total, _ = _cu_meta(cu, q.device)
    if _FLASH_DIRECT:
        out = flash_varlen(q, k, v, cu, max_len, scaling, sliding_window)
        if total < q.shape[0]:  # rows past the last sample (pad_to_multiple_of) are left unwritten by the kernel
            out = torch.nn.functional.pad(out[:total], (0, 0, 0, 0, 0, q.shape[0] - total))
        return out.unsqueeze(0)
    from torch.nn.attention.varlen import varlen_attn

    kw = {}
    if "enable_gqa" in _VARLEN_PARAMS:
        kw["enable_gqa"] = q.shape[1] != k.shape[1]
    elif q.shape[1] != k.shape[1]:
        groups = q.shape[1] // k.shape[1]
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    if "window_size" in _VARLEN_PARAMS:
        kw["window_size"] = (sliding_window - 1 if sliding_window and max_len > sliding_window else -1, 0)
    else:
        kw["is_causal"] = True
    if "scale" in _VARLEN_PARAMS and scaling is not None:
        kw["scale"] = scaling
    out = varlen_attn(q.contiguous(), k.contiguous(), v.contiguous(), cu, cu, max_len, max_len, **kw)
    if isinstance(out, tuple):
        out = out[0]
    if total < q.shape[0]:
        out = torch.nn.functional.pad(out, (0, 0, 0, 0, 0, q.shape[0] - total))
    return out.unsqueeze(0)


def varlen_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0, scaling=None,
                             sliding_window=None, **kwargs):
    """An ``AttentionInterface`` function: packed rows (cu_seq_lens_q given, one row) attend per sample."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    cu = kwargs.get("cu_seq_lens_q")
    if cu is None or query.shape[0] != 1 or (module.training and dropout):
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout, scaling=scaling,
                                      sliding_window=sliding_window, **kwargs)
    max_len = kwargs.get("max_length_q")
    if max_len is None or isinstance(max_len, torch.Tensor):
        max_len = _cu_meta(cu, query.device)[2]
    if query.is_cuda and varlen_available() and query.dtype in (torch.float16, torch.bfloat16):
        return _varlen(query, key, value, cu, int(max_len), scaling, sliding_window), None
    return packed_sdpa_loop(query, key, value, cu, scaling, sliding_window), None


def _varlen_mask(*args, attention_mask=None, **kwargs):
    """Mask for ``ethsft_varlen``: none for packed/causal batches (the kernel knows the boundaries), the usual
    SDPA mask where a padded 2D mask is given."""
    from transformers.masking_utils import sdpa_mask

    if attention_mask is None or bool(attention_mask.all()):
        return None
    return sdpa_mask(*args, attention_mask=attention_mask, **kwargs)


def register_attention() -> str:
    """Register ``ethsft_varlen`` with transformers. Reads ``varlen_attn``'s signature here, not inside the
    attention call: a module global that changes after a layer is compiled fails its guard and recompiles it,
    which inside a CUDA-graph capture invalidates the capture."""
    global _VARLEN_PARAMS
    import inspect

    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface

    if varlen_available():
        from torch.nn.attention.varlen import varlen_attn

        _VARLEN_PARAMS = frozenset(inspect.signature(varlen_attn).parameters)
    AttentionInterface.register(VARLEN, varlen_attention_forward)
    AttentionMaskInterface.register(VARLEN, _varlen_mask)
    return VARLEN


def use_varlen_attention(model) -> str:
    """Switch a loaded model to ``ethsft_varlen``; returns the implementation now in use."""
    register_attention()
    try:
        model.set_attn_implementation(VARLEN)
    except Exception:  # older/stricter transformers: set the config field every attention layer reads
        for cfg in {id(m.config): m.config for m in model.modules() if hasattr(m, "config")}.values():
            cfg._attn_implementation = VARLEN
    return model.config._attn_implementation


# --------------------------------------------------------------------------------------------------------------
# lean SwiGLU MLP
class _SwiGLU(torch.autograd.Function):
    """silu(g) * u saving only g and u (silu(g) is recomputed in backward)."""

    @staticmethod
    def forward(ctx, g, u):
        ctx.save_for_backward(g, u)
        return torch.nn.functional.silu(g) * u

    @staticmethod
    def backward(ctx, dy):
        g, u = ctx.saved_tensors
        gf = g.float()
        sig = torch.sigmoid(gf)
        silu = gf * sig
        du = (dy.float() * silu).to(u.dtype)
        dg = (dy.float() * u.float() * sig * (1 + gf * (1 - sig))).to(g.dtype)
        return dg, du


def _lean_mlp_forward(self, x):
    return self.down_proj(_SwiGLU.apply(self.gate_proj(x), self.up_proj(x)))


def lean_mlp(model) -> int:
    """Patch every SwiGLU MLP (gate/up/down with silu) of ``model``; returns how many were patched."""
    n = 0
    for m in model.modules():
        if all(hasattr(m, a) for a in ("gate_proj", "up_proj", "down_proj", "act_fn")) \
                and type(m.act_fn).__name__ in ("SiLU", "SiLUActivation"):
            m.forward = partial(_lean_mlp_forward, m)
            n += 1
    return n


# --------------------------------------------------------------------------------------------------------------
# LoRA dropout that keeps no copy of its input
def _dropout_mask(shape, p: float, seed: int, device) -> torch.Tensor:
    g = torch.Generator(device=device)
    g.manual_seed(seed)
    return torch.empty(shape, dtype=torch.bool, device=device).bernoulli_(1.0 - p, generator=g)


class _DropoutLinear(torch.autograd.Function):
    """``linear(dropout(x), w)`` saving x and a seed: the mask is drawn again in backward. peft's
    ``lora_A(dropout(x))`` keeps the dropped copy of x and the mask for every adapted module; here the modules fed
    the same hidden states (q and v) share one saved x. With ``seed`` None (CUDA graphs: a host-drawn seed would
    be replayed unchanged) the mask is drawn from the device generator and kept as bools instead."""

    @staticmethod
    def forward(ctx, x, weight, p: float, seed: int | None):
        w = weight.to(x.dtype)
        if seed is None:  # one fused kernel, as nn.Dropout: the dropped copy is not kept, the mask is
            xd, keep = torch.native_dropout(x, p, True)
            ctx.save_for_backward(x, weight, keep)
        else:
            keep = _dropout_mask(x.shape, p, seed, x.device)
            xd = (x * keep).mul_(1.0 / (1.0 - p))
            ctx.save_for_backward(x, weight)
        ctx.p, ctx.seed = p, seed
        return xd @ w.t()

    @staticmethod
    def backward(ctx, dy):
        x, weight, *kept = ctx.saved_tensors
        scale = 1.0 / (1.0 - ctx.p)
        keep = kept[0] if kept else _dropout_mask(x.shape, ctx.p, ctx.seed, x.device)
        dy = dy.to(x.dtype)
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = torch.ops.aten.native_dropout_backward(dy @ weight.to(x.dtype), keep, scale)
        if ctx.needs_input_grad[1]:
            xd = torch.ops.aten.native_dropout_backward(x, keep, scale)
            dw = (dy.reshape(-1, dy.shape[-1]).t() @ xd.reshape(-1, xd.shape[-1])).to(weight.dtype)
        return dx, dw, None, None


def _dropout_linear_forward(module, p: float, device_masks: bool, x):
    if not (module.training and torch.is_grad_enabled()):
        return torch.nn.functional.linear(x, module.weight.to(x.dtype))
    # a host-drawn seed (no GPU sync; checkpoint recompute restores the host RNG), or device masks for graphs
    seed = None if device_masks else int(torch.randint(0, 2**62, (1,)).item())
    return _DropoutLinear.apply(x, module.weight, p, seed)


def lean_lora_dropout(model, device_masks: bool = False) -> int:
    """Fold each LoRA adapter's dropout into its ``lora_A`` (see ``_DropoutLinear``; ``device_masks`` for CUDA
    graphs); returns modules changed."""
    n = 0
    for m in model.modules():
        drops, lora_a = getattr(m, "lora_dropout", None), getattr(m, "lora_A", None)
        if not isinstance(drops, torch.nn.ModuleDict) or not isinstance(lora_a, torch.nn.ModuleDict):
            continue
        for name, drop in list(drops.items()):
            a = lora_a[name] if name in lora_a else None
            p = getattr(drop, "p", 0.0)
            if isinstance(drop, torch.nn.Dropout) and 0 < p < 1 and isinstance(a, torch.nn.Linear) and a.bias is None \
                    and name not in getattr(m, "lora_variant", {}):
                drops[name] = torch.nn.Identity()
                a.forward = partial(_dropout_linear_forward, a, p, device_masks)
                n += 1
    return n


def _lora_addmm_forward(module, own_forward, x, *args, **kwargs):
    active = [a for a in module.active_adapters if a in module.lora_A]
    if module.disable_adapters or module.merged or args or kwargs or len(active) != 1 \
            or active[0] in getattr(module, "lora_variant", {}) or module.lora_B[active[0]].bias is not None:
        return own_forward(x, *args, **kwargs)
    name = active[0]
    result = module.base_layer(x)
    lora_a = module.lora_A[name]
    a = lora_a(module.lora_dropout[name](x if torch.is_autocast_enabled() else x.to(lora_a.weight.dtype)))
    out = torch.addmm(result.reshape(-1, result.shape[-1]), a.reshape(-1, a.shape[-1]).to(result.dtype),
                      module.lora_B[name].weight.t().to(result.dtype), alpha=module.scaling[name])
    return out.view(result.shape)


def lean_lora_add(model) -> int:
    """Each LoRA linear (one plain adapter active) adds its update with one ``addmm``: base + scaling * (A x) B^T,
    the scaling and the sum inside the GEMM. peft copies the base output, then scales and adds in two more passes
    over it (three full-size elementwise kernels per adapter forward, one more in backward). Returns modules
    changed; anything else (merged, disabled, several adapters, DoRA, biased B) goes to peft's own forward."""
    n = 0
    for m in model.modules():
        if isinstance(getattr(m, "lora_A", None), torch.nn.ModuleDict) and hasattr(m, "base_layer") \
                and not getattr(m, "ethsft_lora_addmm", False):
            m.forward = partial(_lora_addmm_forward, m, m.forward)
            m.ethsft_lora_addmm = True
            n += 1
    return n


# --------------------------------------------------------------------------------------------------------------
# checkpointing sized to a budget
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
    room = budget_gib * GIB - margin_gib * GIB - p_all - extra
    free = max(0, min(n, int(room // per_layer)))
    plan.update(tokens=int(inputs["input_ids"].numel()), peak_all_ckpt_gib=p_all / GIB,
                per_uncheckpointed_layer_gib=per_layer / GIB, checkpointed=n - free,
                predicted_peak_gib=(p_all + extra + free * per_layer) / GIB)
    plan["checkpointed_layers"] = set_checkpointed_layers(trainer.model, n - free)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    return plan


def compile_settings() -> None:
    """Process-wide torch.compile settings of the compiled layers. Common-subexpression elimination off: with it,
    AOTAutograd merges backward's dequantisation of a 4-bit weight (``ethsft.nf4``) with forward's and keeps the
    bf16 weight from forward to backward, ~0.4 GiB per 7B layer; without it only the 4-bit tensors are kept."""
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
    (``ethsft.graphs``; None: none)."""
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
        from ethsft.fastpath.graphs import use_cuda_graphs

        trainer.ethsft_graphs = use_cuda_graphs(trainer, graph_rows)
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
