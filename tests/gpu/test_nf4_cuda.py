"""ethsft.fastpath.nf4's tensor-op dequantisation (eager, and compiled as CUDA-graphed steps use it) equals
bitsandbytes' CUDA kernel bit for bit on Mistral-7B's weight shapes (timings: benchmarks/gpu_nf4_check.py)."""

import pytest
import torch

from ethsft.fastpath import nf4


@pytest.mark.parametrize("n,k", [(4096, 4096), (1024, 4096), (14336, 4096), (4096, 14336)])
def test_dequantisation_equals_bitsandbytes_bit_for_bit(n, k):
    import bitsandbytes as bnb

    lin = bnb.nn.Linear4bit(k, n, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4",
                            compress_statistics=True).cuda()
    state = nf4.nf4_state(lin)
    theirs = bnb.functional.dequantize_4bit(lin.weight.data, lin.weight.quant_state).to(torch.bfloat16)
    assert torch.equal(nf4.dequantize(*state, torch.bfloat16), theirs)
    assert torch.equal(nf4.fused_dequantize(*state, torch.bfloat16), theirs)
