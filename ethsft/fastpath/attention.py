"""``ethsft_varlen`` (``VARLEN``), the fast path's attention for packed rows: packed rows go through PyTorch's
bundled FlashAttention varlen kernel (``aten._flash_attention_*``, grouped k/v heads passed as they are) using the
``cu_seq_lens_q`` TRL's padding-free collator computes; each sample attends only to itself (causal), no L x L mask,
no host sync per layer. Without CUDA a per-sample SDPA loop (``packed_sdpa_loop``) gives the same result;
unpacked/padded batches go to SDPA. ``use_varlen_attention`` switches a loaded model to it."""

from __future__ import annotations

import torch

VARLEN = "ethsft_varlen"


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
