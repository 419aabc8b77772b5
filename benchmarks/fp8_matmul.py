"""Would FP8 matmuls pay on this GPU? Times, side by side on Mistral-7B's linear shapes, what a frozen 4-bit base
linear costs per micro-batch of M tokens:

  bf16  forward y = x W^T and backward dx = dy W, W dequantised to bf16 once for each (as the fast path does now)
  fp8   the same two products through ``torch._scaled_mm`` in e4m3 with row-wise scales (x and dy quantised per
        token, W per output row for forward and per input column for backward), quantisation of x, dy and W
        included (compiled, as it would be inside a compiled layer)

and the relative error of each against float32. Prints a table and writes ``--out`` (JSON). GPU with FP8 (sm_89+).
    python benchmarks/fp8_matmul.py --tokens 2048 16384 --out fp8_matmul.json
"""

from __future__ import annotations

import argparse
import json

import torch

SHAPES = {"q/o": (4096, 4096), "k/v": (1024, 4096), "gate/up": (14336, 4096), "down": (4096, 14336)}  # (N, K)
E4M3 = torch.float8_e4m3fn
FMAX = torch.finfo(E4M3).max


def quant_rows(t):
    """Row-wise e4m3: (t / s) with s = amax(row) / 448, and s (float32, one per row)."""
    s = t.abs().amax(dim=1, keepdim=True).float().clamp(min=1e-12) / FMAX
    return (t.float() / s).to(E4M3), s


def fp8_forward(x, w):  # x (M,K) bf16, w (N,K) bf16 -> (M,N)
    xq, sx = quant_rows(x)
    wq, sw = quant_rows(w)  # per output row
    return torch._scaled_mm(xq, wq.t(), scale_a=sx, scale_b=sw.t(), out_dtype=torch.bfloat16)


def fp8_backward(dy, w):  # dy (M,N), w (N,K) -> (M,K): per-input-column scales of w
    dq, sd = quant_rows(dy)
    wt = w.t().contiguous()  # (K,N): rows of W^T are W's columns
    wq, sw = quant_rows(wt)
    return torch._scaled_mm(dq, wq.t(), scale_a=sd, scale_b=sw.t(), out_dtype=torch.bfloat16)


def bf16_forward(x, w):
    return x @ w.t()


def bf16_backward(dy, w):
    return dy @ w


def timed(fn, *args, reps=20):
    for _ in range(3):
        fn(*args)
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.synchronize()
    start.record()
    for _ in range(reps):
        fn(*args)
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / reps


def rel_err(got, ref):
    return ((got.float() - ref).norm() / ref.norm()).item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, nargs="+", default=[2048, 16384])
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    fwd8, bwd8 = torch.compile(fp8_forward), torch.compile(fp8_backward)
    rows, total = [], {}
    torch.manual_seed(0)
    for m in args.tokens:
        for name, (n, k) in SHAPES.items():
            x = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
            dy = torch.randn(m, n, device="cuda", dtype=torch.bfloat16)
            w = (torch.randn(n, k, device="cuda") * 0.02).to(torch.bfloat16)
            t16 = timed(bf16_forward, x, w) + timed(bf16_backward, dy, w)
            t8 = timed(fwd8, x, w) + timed(bwd8, dy, w)
            ref_f, ref_b = x.float() @ w.float().t(), dy.float() @ w.float()
            row = {"tokens": m, "linear": name, "N": n, "K": k, "bf16_ms": round(t16, 4), "fp8_ms": round(t8, 4),
                   "speedup": round(t16 / t8, 3), "tflops_bf16": round(4 * m * n * k / t16 / 1e9, 1),
                   "err_bf16_fwd": rel_err(bf16_forward(x, w), ref_f), "err_fp8_fwd": rel_err(fwd8(x, w), ref_f),
                   "err_bf16_bwd": rel_err(bf16_backward(dy, w), ref_b), "err_fp8_bwd": rel_err(bwd8(dy, w), ref_b)}
            rows.append(row)
            # per decoder layer: q, k, v, o, gate, up, down
            count = {"q/o": 2, "k/v": 2, "gate/up": 2, "down": 1}[name]
            t = total.setdefault(m, [0.0, 0.0])
            t[0] += count * t16
            t[1] += count * t8
            print(f"M={m:6d} {name:8s} bf16 {t16:7.3f} ms ({row['tflops_bf16']:6.1f} TFLOP/s)  fp8 {t8:7.3f} ms  "
                  f"x{t16 / t8:4.2f}  err fwd {row['err_bf16_fwd']:.1e}/{row['err_fp8_fwd']:.1e} "
                  f"bwd {row['err_bf16_bwd']:.1e}/{row['err_fp8_bwd']:.1e}")
    for m, (a, b) in total.items():
        print(f"M={m}: one decoder layer's base linears, forward + input-gradient: bf16 {a:.2f} ms, fp8 {b:.2f} ms "
              f"(x{a / b:.2f})")
    if args.out:
        json.dump({"rows": rows, "per_layer_ms": {str(m): v for m, v in total.items()},
                   "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}, open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
