"""The compiled fast path's NF4 dequantisation (``ethsft.fastpath.nf4``) gives bitsandbytes' numbers exactly."""

from __future__ import annotations

import pytest
import torch

bnb = pytest.importorskip("bitsandbytes")

from ethsft.fastpath import nf4  # noqa: E402


def _quantized(shape, double_quant: bool, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g) * 0.05
    w[0, :7] = torch.tensor([0.0, 1.0, -1.0, 0.5, -0.25, 3.0, -3.0])  # table ends and an all-but-zero block
    packed, qs = bnb.functional.quantize_4bit(w, blocksize=64, quant_type="nf4", compress_statistics=double_quant)
    return packed, qs


def _state(packed, qs):
    module = bnb.nn.Linear4bit(qs.shape[1], qs.shape[0], bias=False, quant_type="nf4")
    module.weight = bnb.nn.Params4bit(packed, requires_grad=False, quant_state=qs, quant_type="nf4", bnb_quantized=True)
    return module, nf4.nf4_state(module)


@pytest.mark.parametrize("double_quant", [True, False])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_dequantize_bit_identical_to_bitsandbytes(double_quant, dtype):
    # 96 x 320: 480 blocks of 64, not a multiple of the 256-block double-quant groups
    packed, qs = _quantized((96, 320), double_quant)
    _, state = _state(packed, qs)
    assert (state[3] is not None) == double_quant
    ours = nf4.dequantize(*state, dtype)
    qs.dtype = dtype
    theirs = bnb.functional.dequantize_4bit(packed, qs)
    assert ours.dtype == theirs.dtype == dtype and ours.shape == (96, 320)
    assert torch.equal(ours, theirs)


def test_linear_same_output_and_input_grad_as_bitsandbytes():
    packed, qs = _quantized((48, 128), True, seed=1)
    module, _ = _state(packed, qs)
    module.compute_dtype = torch.float32
    x = torch.randn(3, 5, 128, generator=torch.Generator().manual_seed(2))

    def run():
        xi = x.clone().requires_grad_(True)
        y = module(xi)
        (y * torch.arange(y.numel()).reshape(y.shape).sin()).sum().backward()
        return y.detach(), xi.grad

    y_bnb, g_bnb = run()
    assert nf4.use_tensor_dequant(torch.nn.Sequential(module)) == 1
    y_ours, g_ours = run()
    torch.testing.assert_close(y_ours, y_bnb, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g_ours, g_bnb, rtol=1e-5, atol=1e-6)
    assert not y_bnb.equal(torch.zeros_like(y_bnb))


def test_fp4_left_to_bitsandbytes():
    w = torch.randn(16, 64)
    packed, qs = bnb.functional.quantize_4bit(w, blocksize=64, quant_type="fp4")
    module = bnb.nn.Linear4bit(64, 16, bias=False, quant_type="fp4")
    module.weight = bnb.nn.Params4bit(packed, requires_grad=False, quant_state=qs, quant_type="fp4", bnb_quantized=True)
    assert nf4.nf4_state(module) is None
    assert nf4.use_tensor_dequant(torch.nn.Sequential(module)) == 0


def test_compiled_linear_keeps_only_the_4bit_weight(monkeypatch):
    """Compiled (``optimization.compile``), backward dequantises again: what forward saves is the 4-bit weight and
    its scales, never a dequantised copy (which costs ~0.4 GiB per layer of a 7B model)."""
    import torch._dynamo
    import torch._functorch.config

    from ethsft.fastpath.prepare import compile_settings

    # compile_settings changes process-wide settings: put them back after this test
    monkeypatch.setattr(torch._functorch.config, "cse", torch._functorch.config.cse)
    monkeypatch.setattr(torch._dynamo.config, "cache_size_limit", torch._dynamo.config.cache_size_limit)
    packed, qs = _quantized((512, 256), True, seed=3)
    module, _ = _state(packed, qs)
    module.compute_dtype = torch.float32
    nf4.use_tensor_dequant(torch.nn.Sequential(module))
    compile_settings()
    compiled = torch.compile(module)
    x = torch.randn(64, 256, requires_grad=True, generator=torch.Generator().manual_seed(4))
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        y = compiled(x)
    y.square().sum().backward()
    assert saved and all(t.dtype == torch.uint8 or t.numel() <= 512 for t in saved), \
        [(tuple(t.shape), t.dtype) for t in saved]
    eager = module(x.detach().requires_grad_(True))
    torch.testing.assert_close(y, eager, rtol=1e-5, atol=1e-6)
