"""On a GPU: ethsft.fastpath.nf4's tensor-op dequantisation (eager, and compiled alone as CUDA-graphed steps use it) equals
bitsandbytes' CUDA kernel bit for bit on Mistral-7B's weight shapes; GPU time of one dequantisation each way; what
one 4-bit linear costs (host and GPU) through bitsandbytes vs a compiled tensor-op one.
Usage: python benchmarks/gpu_nf4_check.py > nf4_check.json"""
import json
import time

import bitsandbytes as bnb
import torch

from ethsft.fastpath import nf4


def timed(fn, n=50):
    for _ in range(3):
        fn()
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    host = (time.perf_counter() - t0) / n
    torch.cuda.synchronize()
    return host, (time.perf_counter() - t0) / n


out = {}
for (n, k) in [(4096, 4096), (1024, 4096), (14336, 4096), (4096, 14336)]:
    lin = bnb.nn.Linear4bit(k, n, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4",
                            compress_statistics=True).cuda()
    qs = lin.weight.quant_state
    state = nf4.nf4_state(lin)
    ours = nf4.dequantize(*state, torch.bfloat16)
    theirs = bnb.functional.dequantize_4bit(lin.weight.data, qs).to(torch.bfloat16)
    fused = nf4.fused_dequantize(*state, torch.bfloat16)
    row = {"equal": bool(torch.equal(ours, theirs)), "max_abs_diff": float((ours.float() - theirs.float()).abs().max()),
           "fused_equal": bool(torch.equal(fused, theirs)),
           "fused_max_abs_diff": float((fused.float() - theirs.float()).abs().max())}
    row["bnb_dequant_s"] = timed(lambda: bnb.functional.dequantize_4bit(lin.weight.data, qs), 200)[1]
    row["fused_dequant_s"] = timed(lambda: nf4.fused_dequantize(*state, torch.bfloat16), 200)[1]
    x = torch.randn(2048, k, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    g = torch.randn(2048, n, device="cuda", dtype=torch.bfloat16)

    def bnb_step():
        lin(x).backward(g)

    row["bnb_host_s"], row["bnb_wall_s"] = timed(bnb_step)
    nf4.use_tensor_dequant(torch.nn.Sequential(lin))
    comp = torch.compile(lin)

    def ours_step():
        comp(x).backward(g)

    row["compiled_host_s"], row["compiled_wall_s"] = timed(ours_step)
    out[f"{n}x{k}"] = row
    print(f"{n}x{k}", row, flush=True)
print(json.dumps(out, indent=1))
