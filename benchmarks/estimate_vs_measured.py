"""Estimated vs measured: ethsft.planning.estimate's memory/time model against the H100 measurements.

    python benchmarks/estimate_vs_measured.py                      # prints the markdown table
    python benchmarks/estimate_vs_measured.py --out benchmarks/results/estimate_vs_measured_h100_2026-11-25.md
    python benchmarks/estimate_vs_measured.py --fit                # least-squares values for the fitted constants

Reads benchmarks/results/calibration_h100_2026-11-25.json (benchmarks/calibrate_estimate.py: a random Mistral-7B-shaped
model, NF4 + LoRA, bf16, accumulation 1) and, for each setting, calls the model (``estimate_memory``,
``estimate_step_time``) at the micro-batch shapes that run trained on: peak memory at its largest micro-batch
(rows x columns as collated, warm-up step included: the peak is over the whole run), s/step for each measured
step's own shape and completion fraction, averaged. Also checks two full runs of the 12GB preset
(guide_12gb_seq2048_h100_2026-11-25.json, guide_12gb_synth_h100_2026-11-25.json: accumulation 16, 3 steps, first step's warm-up included).
No GPU, no network: the settings come from the presets, the shapes from the embedded 7B shape.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

RESULTS = REPO / "benchmarks" / "results"
MODEL = "embedded:mistral-7b"
# the calibration's settings (benchmarks/calibrate_estimate.py SETTINGS), accumulation 1
SETTINGS = {
    "12gb": [],
    "12gb-bs2": ["training.per_device_train_batch_size=2"],
    "12gb-nockpt": ["optimization.gradient_checkpointing=false"],
    "pack2048": ["data.packing=true", "data.max_length=2048"],
    "12gb-r64-all": ["lora.r=64", "lora.alpha=128", "lora.target_modules=all-linear"],
}
STALL = 2.0  # a step over STALL x the setting's fastest measured step is a one-off stall (see the notes)


def settings(sets: list[str], accumulation: int = 1):
    from ethsft.config.schema import load_settings

    return load_settings(REPO / "configs" / "training_config.yaml", {"model.base_model": MODEL, "model.cache_dir": None},
                         [*sets, f"training.gradient_accumulation_steps={accumulation}"])


def measured_steps(r: dict) -> list[dict]:
    """The measured (post-warm-up) steps: shape, step and micro-step seconds, stall flag."""
    w = r["warmup"]
    steps = [dict(shape, step_s=st, micro_s=mi) for shape, st, mi in
             zip(r["shapes"][w:], r["step_s_all"][w:], r["micro_s_all"][w:])]
    fastest = min(x["step_s"] for x in steps)
    for x in steps:
        x["stall"] = x["step_s"] > STALL * fastest
    return steps


def model_rows(calib: dict) -> list[dict]:
    from ethsft.planning.hardware import named_gpu
    from ethsft.planning.memory import estimate_memory
    from ethsft.planning.shapes import model_shape
    from ethsft.planning.speed import estimate_step_time

    gpu = named_gpu("h100")
    rows = []
    for r in calib["results"]:
        s = settings(SETTINGS[r["setting"]])
        shape = model_shape(s)
        steps = measured_steps(r)
        big = max(r["shapes"], key=lambda x: x["tokens"])
        mem = estimate_memory(s, shape, big["cols"], big["rows"], big["completion_tokens"] / big["tokens"])
        for x in steps:
            t = estimate_step_time(s, shape, gpu, x["tokens"], x["cols"], x["completion_tokens"] / x["tokens"])
            x["model_step_s"], x["model_micro_s"], x["bound"] = t.step_s, t.micro_step_s, t.bound
        steady = [x for x in steps if not x["stall"]]
        rows.append({
            "setting": r["setting"], "tokens_per_step": statistics.mean(x["tokens"] for x in steps),
            "peak_gb": r["peak_allocated_gb"], "model_peak_gb": mem.peak_allocated_gib,
            "step_s": statistics.mean(x["step_s"] for x in steps),
            "model_step_s": statistics.mean(x["model_step_s"] for x in steps),
            "steady_step_s": statistics.mean(x["step_s"] for x in steady),
            "model_steady_step_s": statistics.mean(x["model_step_s"] for x in steady),
            "steady_tokens": sum(x["tokens"] for x in steady),
            "steady_n": len(steady), "n": len(steps), "bound": steps[0]["bound"],
            "stalls": [(x["tokens"], round(x["step_s"], 2)) for x in steps if x["stall"]],
            "tokens": sum(x["tokens"] for x in steps),
        })
    return rows


def full_runs(calib: dict) -> list[dict]:
    """The two 12GB-preset runs (accumulation 16): tokens/s and peak, measured vs model."""
    from ethsft.planning.hardware import named_gpu
    from ethsft.planning.memory import estimate_memory
    from ethsft.planning.shapes import model_shape
    from ethsft.planning.speed import estimate_step_time

    gpu = named_gpu("h100")
    comp = calib["results"][0]["completion_fraction"]  # the synth dataset's completion share (not in these files)
    out = []
    for name, fname, row_len, peak_len, note in [
            ("12gb seq2048", "guide_12gb_seq2048_h100_2026-11-25.json", 2048, 2048, "every sample 2,048 tokens"),
            ("12gb realistic", "guide_12gb_synth_h100_2026-11-25.json", None, 1256,
             "synth samples; peak model at the dataset's longest sample (1,256), an upper bound")]:
        m = json.loads((RESULTS / fname).read_text())
        s = settings([], m["effective_batch"])
        shape = model_shape(s)
        micro_batches = m["global_step"] * m["effective_batch"]
        tokens = row_len or m["train_tokens"] / micro_batches
        t = estimate_step_time(s, shape, gpu, tokens, tokens, comp)
        mem = estimate_memory(s, shape, peak_len, 1, comp)
        out.append({"setting": name, "note": note, "tokens_per_micro": tokens,
                    "peak_gb": m["peak_vram_gb"], "model_peak_gb": mem.peak_allocated_gib,
                    "step_s": m["train_runtime_s"] / m["global_step"], "model_step_s": t.step_s,
                    "tok_s": m["train_tokens_per_s"], "model_tok_s": t.tokens_per_s})
    return out


def pct(model: float, meas: float) -> str:
    return f"{100 * (model - meas) / meas:+.0f}%"


def markdown(calib: dict) -> str:
    from ethsft.planning import memory, speed

    rows = model_rows(calib)
    gpu = calib["results"][0]["gpu"]
    lines = [
        "# ethsft estimate vs measured (H100)",
        "",
        f"Measured: benchmarks/results/calibration_h100_2026-11-25.json ({gpu}, torch {calib['results'][0]['torch']}; a random "
        "Mistral-7B-shaped model, NF4 double-quant + LoRA, bf16, sdpa, accumulation 1, "
        f"{rows[0]['n']} measured steps after {calib['results'][0]['warmup']} warm-up step per setting). "
        "Model: ethsft/planning at the shapes each run trained on. Regenerate with "
        "`python benchmarks/estimate_vs_measured.py --out benchmarks/results/estimate_vs_measured_h100_2026-11-25.md`.",
        "",
        "Peak GB: `torch.cuda.max_memory_allocated` vs the memory model at the run's largest micro-batch. "
        "s/step: mean over the measured steps vs the model at each step's own shape, averaged. "
        "tokens/s: padded tokens per second over the measured steps.",
        "",
        "| setting | tok/step | peak GB meas | peak GB model | err | s/step meas | s/step model | err "
        "| tok/s meas | tok/s model | err |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        tps, mtps = r["tokens"] / (r["step_s"] * r["n"]), r["tokens"] / (r["model_step_s"] * r["n"])
        lines.append(f"| {r['setting']} | {r['tokens_per_step']:.0f} | {r['peak_gb']:.2f} | {r['model_peak_gb']:.2f} | "
                     f"{pct(r['model_peak_gb'], r['peak_gb'])} | {r['step_s']:.3f} | {r['model_step_s']:.3f} | "
                     f"{pct(r['model_step_s'], r['step_s'])} | {tps:.0f} | {mtps:.0f} | {pct(mtps, tps)} |")
    lines += [
        "",
        f"Steady steps only (a step over {STALL:g}x the setting's fastest measured step is left out as a one-off stall):",
        "",
        "| setting | steps kept | stalls left out (tokens, s) | s/step meas | s/step model | err | tok/s meas "
        "| tok/s model | err | model |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        tps = r["steady_tokens"] / (r["steady_step_s"] * r["steady_n"])
        mtps = r["steady_tokens"] / (r["model_steady_step_s"] * r["steady_n"])
        stalls = ", ".join(f"{t} tok: {s} s" for t, s in r["stalls"]) or "none"
        lines.append(f"| {r['setting']} | {r['steady_n']}/{r['n']} | {stalls} | {r['steady_step_s']:.3f} | "
                     f"{r['model_steady_step_s']:.3f} | {pct(r['model_steady_step_s'], r['steady_step_s'])} | "
                     f"{tps:.0f} | {mtps:.0f} | {pct(mtps, tps)} | {r['bound']} |")
    lines += [
        "",
        "Full runs of the 12GB preset (accumulation 16, 3 steps; measured time includes the first step's warm-up):",
        "",
        "| run | tokens/micro-batch | peak GB meas | peak GB model | err | s/step meas | s/step model | err "
        "| tok/s meas | tok/s model | err |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for f in full_runs(calib):
        lines.append(f"| {f['setting']} ({f['note']}) | {f['tokens_per_micro']:.0f} | {f['peak_gb']:.2f} | "
                     f"{f['model_peak_gb']:.2f} | {pct(f['model_peak_gb'], f['peak_gb'])} | {f['step_s']:.2f} | "
                     f"{f['model_step_s']:.2f} | {pct(f['model_step_s'], f['step_s'])} | {f['tok_s']:.0f} | "
                     f"{f['model_tok_s']:.0f} | {pct(f['model_tok_s'], f['tok_s'])} |")
    lines += [
        "",
        "Constants (ethsft/planning/speed.py and memory.py, fitted on these measurements unless marked): "
        f"host {speed.HOST_LAYER_PASS_S * 1e3:.2f} ms per layer per pass + {speed.HOST_LORA_PASS_S * 1e3:.2f} ms "
        f"per LoRA adapter per layer per pass + {speed.LAUNCH_OVERHEAD_S * 1e3:.0f} ms per micro-step; optimizer "
        f"step {speed.OPTIMIZER_STEP_S * 1e3:.1f} ms + {speed.OPTIMIZER_TENSOR_S * 1e3:.3f} ms per LoRA tensor; "
        f"CKPT_LIVE_LAYERS {memory.CKPT_LIVE_LAYERS}; ALLOCATOR_OVERHEAD {memory.ALLOCATOR_OVERHEAD}, "
        f"CUDA_CONTEXT_GIB {memory.CUDA_CONTEXT_GIB} (measured); MFU {speed.MFU} and DEQUANT_BANDWIDTH_EFF "
        f"{speed.DEQUANT_BANDWIDTH_EFF} "
        "(first-principles: every setting here is host-bound, so they only bound the device side).",
        "",
        "Notes:",
        "",
        "- Memory: within 1% on the five settings, 1-2% on the full runs. What moved it: per-layer saved tensors counted "
        "from what autograd keeps (frozen 4-bit linears save nothing; each LoRA adapter with dropout saves its own "
        "dropout output and mask), one recomputed layer live under checkpointing (fitted 1.07), LoRA grads not at "
        "the peak with accumulation 1.",
        "- Time: the 7B micro-batch on this H100 is host-bound: ~0.57 s with checkpointing from 267 to 2,048 tokens, "
        "~0.38 s without (2 passes instead of 3: the same ~5.9 ms per layer per pass), ~0.79 s with LoRA on all "
        "seven linears (+0.47 ms per adapter per layer per pass). FLOPs and dequantization (~5 ms per pass at "
        "full bandwidth) are hidden under it; they set the pace only on slower cards or much longer micro-batches.",
        "- The mean s/step of 12gb-bs2 and pack2048 is not a per-token cost: it is one and two one-off ~2.5 s "
        "stalls. pack2048's repeated 2,048-token shape ran in 0.535 s, and 48 micro-batches of 2,048 tokens in "
        "guide_12gb_seq2048_h100_2026-11-25.json averaged ~0.54 s including the first step's warm-up. A per-token cost fitted to "
        "those means (~1 ms/token) would put seq2048 at ~950 tok/s against 3,782 measured. With 3 measured steps a "
        "setting, what triggers the stalls (new sequence lengths? some new shapes, not all) is not settled here.",
        "- guide_12gb_synth_h100_2026-11-25.json ran 40% slower per step than the model (and than the calibration's steady steps "
        "at these lengths). Its micro-batches change length every time, so the same stalls are the likely cause; "
        "its per-step timings were not recorded. To settle both: measure more steps with per-micro-step times "
        "and shapes (benchmarks/calibrate_estimate.py --steps 20) and profile a stalled step.",
    ]
    return "\n".join(lines) + "\n"


def fit(calib: dict) -> dict:
    """Least squares for the fitted constants from the steady micro-steps (host), step - micro (optimizer) and
    the checkpointed peaks (CKPT_LIVE_LAYERS)."""
    import numpy as np

    from ethsft.planning import memory, shapes, speed
    from ethsft.units import GiB

    X, y, Xo, yo = [], [], [], []
    num = den = 0.0
    for r in calib["results"]:
        s = settings(SETTINGS[r["setting"]])
        shape = shapes.model_shape(s)
        p, n_t = speed.passes(s), len(shapes.targeted(s, shape))
        for x in measured_steps(r):
            Xo.append([1.0, 2 * shape.layers * n_t])
            yo.append(x["step_s"] - x["micro_s"])
            if not x["stall"]:
                X.append([1.0, p * shape.layers, p * shape.layers * n_t])
                y.append(x["micro_s"])
        if s.optimization.gradient_checkpointing:
            big = max(r["shapes"], key=lambda x: x["tokens"])
            comp = big["completion_tokens"] / big["tokens"]
            mem = memory.estimate_memory(s, shape, big["cols"], big["rows"], comp)
            layer = memory._layer_act_bytes(s, shape, big["cols"], big["rows"] > 1 and not s.data.packing)
            live = big["tokens"] * layer / GiB  # GiB per live layer
            rest = mem.peak_allocated_gib - memory.CKPT_LIVE_LAYERS * live
            num += (r["peak_allocated_gb"] - rest) * live
            den += live * live
    free = np.linalg.lstsq(np.array(X), np.array(y), rcond=None)[0]
    # a fixed per-micro-step host cost fits below zero (-23 ms) on these data, i.e. none: fit without it
    host = np.linalg.lstsq(np.array(X)[:, 1:], np.array(y), rcond=None)[0]
    opt = np.linalg.lstsq(np.array(Xo), np.array(yo), rcond=None)[0]
    return {"HOST_LAYER_PASS_S": host[0], "HOST_LORA_PASS_S": host[1], "OPTIMIZER_STEP_S": opt[0],
            "OPTIMIZER_TENSOR_S": opt[1], "CKPT_LIVE_LAYERS": num / den,
            "(free fit) LAUNCH_OVERHEAD_S": free[0], "(free fit) HOST_LAYER_PASS_S": free[1],
            "(free fit) HOST_LORA_PASS_S": free[2]}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calibration", default=str(RESULTS / "calibration_h100_2026-11-25.json"))
    ap.add_argument("--out", help="write the markdown here (default: print it)")
    ap.add_argument("--fit", action="store_true", help="print least-squares values for the fitted constants")
    args = ap.parse_args()
    calib = json.loads(Path(args.calibration).read_text())
    if args.fit:
        print(json.dumps({k: float(v) for k, v in fit(calib).items()}, indent=2))
        return 0
    md = markdown(calib)
    if args.out:
        Path(args.out).write_text(md, encoding="utf-8")
    print(md, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
