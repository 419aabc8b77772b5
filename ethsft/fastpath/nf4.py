"""4-bit NF4 base weights dequantised in plain PyTorch, for compiled decoder layers (``optimization.compile``) and
CUDA-graphed steps (``optimization.cuda_graphs``: the dequantisation compiled alone, one kernel per weight).

bitsandbytes reaches its CUDA kernels through Python-registered ops: on an H100 each 4-bit matmul costs ~235 us
of host time, so rows of ~2048 tokens run host-bound. Written as tensor ops, the dequantisation (the NF4 table
lookup times the block scale, the scales themselves double-quantised) traces into the compiled layer and
Inductor fuses it into one kernel per weight; the matmul stays cuBLAS. ``dequantize`` gives bitsandbytes' numbers
bit for bit (``tests/fastpath/test_nf4.py``); compiled, the rounding can differ by one bf16 step (``fused_dequantize``). As in
bitsandbytes, backward dequantises again rather than keeping a bf16 copy of the weight.
"""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F


def dequantize(packed, absmax, code, absmax2, code2, offset, shape: tuple, blocksize: int, blocksize2: int,
               dtype: torch.dtype) -> torch.Tensor:
    """The weight of ``shape`` in ``dtype`` from bitsandbytes' packed NF4 (two values a byte, high nibble first),
    per-block scales ``absmax`` (uint8 codes into ``code2`` scaled by ``absmax2`` plus ``offset`` when
    double-quantised, else float32) and the 16-value table ``code``."""
    if absmax2 is not None:
        n_blocks = absmax.numel()
        scale2 = absmax2.repeat_interleave(blocksize2)[:n_blocks]
        absmax = code2[absmax.long()] * scale2 + offset
    b = packed.reshape(-1).view(torch.uint8)
    nibbles = torch.stack((b >> 4, b & 15), dim=-1).reshape(-1)
    n = shape[0] * shape[1]
    values = code[nibbles[:n].long()].reshape(-1, blocksize) * absmax.float().reshape(-1, 1)
    return values.to(dtype).reshape(shape)


_FUSED = None


def fused_dequantize(*args):
    """``dequantize`` as one kernel per weight shape (``torch.compile`` of it alone) on CUDA, outside compiled
    layers; elsewhere ``dequantize`` itself (inside a compiled layer it is traced and fused there). On an H100 it
    takes half bitsandbytes' time on Mistral-7B's MLP weights and can differ from it by one bf16 step there (the
    compiled arithmetic rounds differently): ``benchmarks/gpu_nf4_check.py``."""
    global _FUSED
    if torch.compiler.is_compiling() or not args[0].is_cuda:
        return dequantize(*args)
    if _FUSED is None:
        _FUSED = torch.compile(dequantize, fullgraph=True, dynamic=False)
    return _FUSED(*args)


class _Linear4bit(torch.autograd.Function):
    """``x @ W.T`` with W dequantised in forward and again in backward; only the 4-bit tensors are kept."""

    @staticmethod
    def forward(ctx, x, packed, absmax, code, absmax2, code2, offset, shape, blocksize, blocksize2):
        w = fused_dequantize(packed, absmax, code, absmax2, code2, offset, shape, blocksize, blocksize2, x.dtype)
        ctx.save_for_backward(packed, absmax, code, absmax2, code2, offset)
        ctx.meta = (shape, blocksize, blocksize2)
        return F.linear(x, w)

    @staticmethod
    def backward(ctx, dy):
        w = fused_dequantize(*ctx.saved_tensors, *ctx.meta, dy.dtype)
        return (dy @ w,) + (None,) * 9


def _forward(self, x):
    inp_dtype = x.dtype
    if self.compute_dtype is not None:
        x = x.to(self.compute_dtype)
    out = _Linear4bit.apply(x, *self.ethsft_nf4)
    if self.bias is not None:
        out = out + self.bias.to(out.dtype)
    return out.to(inp_dtype)


def nf4_state(module) -> tuple | None:
    """What ``_Linear4bit`` needs from a bitsandbytes ``Linear4bit``, in ``dequantize``'s argument order (dtype
    aside); None where it does not apply (FP4, or a layout bitsandbytes only uses for CPU inference)."""
    qs = getattr(module.weight, "quant_state", None)
    if qs is None or qs.quant_type != "nf4" or getattr(qs, "packing_format_for_cpu", False) or len(qs.shape) != 2:
        return None
    nested = qs.state2 if qs.nested else None
    return (module.weight.data, qs.absmax, qs.code.to(qs.absmax.device, torch.float32),
            None if nested is None else nested.absmax, None if nested is None else nested.code,
            None if nested is None else torch.as_tensor(qs.offset, device=qs.absmax.device),
            tuple(int(d) for d in qs.shape), int(qs.blocksize), int(nested.blocksize) if nested else 0)


def use_tensor_dequant(model) -> int:
    """Every bitsandbytes NF4 ``Linear4bit`` in ``model`` dequantises with tensor ops (``_Linear4bit``); returns
    how many. The module, its weight and what is saved stay bitsandbytes' own."""
    import bitsandbytes as bnb

    n = 0
    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            state = nf4_state(module)
            if state is not None:
                module.ethsft_nf4 = state
                module.forward = types.MethodType(_forward, module)
                n += 1
    return n
