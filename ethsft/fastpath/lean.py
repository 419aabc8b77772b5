"""Lean autograd for the MLP and the LoRA adapters: the same math as transformers' and peft's modules, fewer
saved activations and fewer elementwise passes.

* ``lean_mlp``: SwiGLU as one autograd function that keeps gate and up outputs only (recomputes silu and the
  product in backward): ~half the MLP's saved activations. Skipped where Liger is used (it fuses it).
* ``lean_lora_dropout``: each adapter's dropout folded into its ``lora_A`` matmul, the mask drawn again in
  backward from a seed: no dropped copy or mask kept, and q and v share one saved input.
* ``lean_lora_add``: each LoRA update added inside one ``addmm`` (no copy of the base output, no separate scale
  and add passes).
"""

from __future__ import annotations

from functools import partial

import torch


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
