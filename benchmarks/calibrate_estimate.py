"""Calibrate ``ethsft estimate`` on a GPU: train a few steps of the real ``ethsft.train`` path on a randomly
initialised Mistral-7B-shaped model (4-bit NF4 + LoRA) for several settings, measure peak VRAM
(torch.cuda.max_memory_allocated), seconds per step and tokens/s, and print ``ethsft estimate``'s prediction
beside each measurement. Self-contained: no hub, no network.

    python benchmarks/calibrate_estimate.py --dataset data/datasets --out calib.json
    python benchmarks/calibrate_estimate.py --dataset data/datasets --out calib.json --settings pack4096-nockpt,16gb
    python benchmarks/calibrate_estimate.py --list

Each setting runs in its own process (clean CUDA state, exact peaks); results are appended to ``--out`` as
they finish, and settings already in ``--out`` are skipped (``--redo`` measures them again), so a run cut off
by a time limit continues where it stopped. The first call builds the 7B random model once into
$ETHSFT_CACHE/models/mistral-7b (~14.5 GB, a few minutes on CPU).

At the end it prints the estimated-vs-measured table and fitted values for the CALIBRATE constants of
ethsft/planning (MFU, LAUNCH_OVERHEAD_S, activation scale with / without checkpointing, allocator overhead,
CUDA context).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

MODEL = os.environ.get("CALIBRATE_MODEL", "embedded:mistral-7b")  # embedded:tiny-mistral: a CPU smoke test
# name -> (preset, --set overrides). All on the 7B shape; eval and checkpoint saving off, accumulation 1.
SETTINGS: dict[str, tuple[str, list[str]]] = {
    "12gb": ("configs/guide_12gb.yaml", []),
    "12gb-len1024": ("configs/guide_12gb.yaml", ["data.max_length=1024"]),
    "12gb-bs2": ("configs/guide_12gb.yaml", ["training.per_device_train_batch_size=2"]),
    "12gb-r64-all": ("configs/guide_12gb.yaml", ["lora.r=64", "lora.alpha=128", "lora.target_modules=all-linear"]),
    "12gb-nockpt": ("configs/guide_12gb.yaml", ["optimization.gradient_checkpointing=false"]),
    "pack2048": ("configs/guide_12gb.yaml", ["data.packing=true", "data.max_length=2048"]),
    "pack4096-nockpt": ("configs/guide_12gb.yaml", ["data.packing=true", "data.max_length=4096",
                                                         "optimization.gradient_checkpointing=false"]),
    "8gb": ("configs/8gb.yaml", []),
    "16gb": ("configs/16gb.yaml", []),
    "80gb-len8192": ("configs/80gb.yaml", ["data.max_length=8192"]),
}
DEFAULT = ["12gb", "12gb-bs2", "12gb-r64-all", "12gb-nockpt", "pack2048", "pack4096-nockpt"]


def settings_for(name: str, dataset: str, output: str, steps: int):
    from ethsft.config.schema import load_settings

    preset, sets = SETTINGS[name]
    run_sets = [*sets, f"training.max_steps={steps}", "training.gradient_accumulation_steps=1",
                "logging.eval_strategy=no", "logging.save_strategy=no", "logging.load_best_model_at_end=false",
                "logging.logging_steps=1", "training.overwrite=true", "logging.report_to=none"]
    return load_settings(REPO / preset, {"model.base_model": MODEL, "model.cache_dir": None,
                                         "data.dataset_dir": dataset, "training.output_dir": output}, run_sets)


def predictions(s_user, s_run, stats, shapes_seen, gpu) -> dict:
    """What ``ethsft estimate`` says for the preset (its own accumulation) and what the model says at the
    micro-batch shapes this run actually trained on."""
    from ethsft.planning.estimate import estimate_run
    from ethsft.planning.memory import estimate_memory
    from ethsft.planning.shapes import model_shape
    from ethsft.planning.speed import estimate_step_time

    shape = model_shape(s_user)
    est = estimate_run(s_user, gpu, stats, shape, detected=True)
    train = stats.splits["train"]
    comp = sum(min(c, n) for c, n in zip(train.completion, train.lengths)) / sum(train.lengths)
    micro = s_run.training.per_device_train_batch_size
    biggest = max(shapes_seen, key=lambda x: x["tokens"])
    if s_run.data.packing:
        row_len = -(-biggest["tokens"] // micro)
        mem_at = estimate_memory(s_run, shape, row_len, micro, comp)
    else:
        mem_at = estimate_memory(s_run, shape, biggest["cols"], biggest["rows"], comp)
    mean_len = sum(train.trained_lengths()) / len(train.trained_lengths())
    times = []
    for sh in shapes_seen:
        row_len = mean_len if s_run.data.packing else sh["cols"]
        times.append(estimate_step_time(s_run, shape, gpu, sh["tokens"], row_len, comp).step_s)
    return {
        "estimate_peak_allocated_gb": est.memory.peak_allocated_gib,
        "estimate_card_gb": est.memory.card_gib,
        "estimate_peak_assumes": est.assumed,
        "estimate_parts_gb": est.memory.parts,
        "estimate_step_s_accum1": est.time.micro_step_s + (est.time.step_s - est.time.micro_step_s *
                                                           s_user.training.gradient_accumulation_steps),
        "estimate_tokens_per_s": est.time.tokens_per_s,
        "estimate_train_s": est.train_s,
        "estimate_steps": est.total_steps,
        "model_peak_allocated_gb_at_measured_shape": mem_at.peak_allocated_gib,
        "model_parts_gb_at_measured_shape": mem_at.parts,
        "model_step_s_at_measured_shapes": sum(times) / len(times),
        "model_base_weights_gb": mem_at.parts["base weights"],
        "flops_per_token": estimate_step_time(s_run, shape, gpu, 1, mean_len, comp).flops_per_token,
        "completion_fraction": comp,
    }


def measure_one(name: str, dataset: str, steps: int, warmup: int) -> dict:
    import torch
    from transformers import TrainerCallback

    from ethsft.planning.hardware import detect_gpu, named_gpu
    from ethsft.units import GiB
    from ethsft.planning.stats import dataset_stats
    from ethsft.training.recipe import build_trainer

    out = tempfile.mkdtemp(prefix=f"calib-{name}-")
    s = settings_for(name, dataset, out, steps + warmup)
    preset, sets = SETTINGS[name]
    from ethsft.config.schema import load_settings

    s_user = load_settings(REPO / preset, {"model.base_model": MODEL, "model.cache_dir": None,
                                           "data.dataset_dir": dataset}, sets)
    stats = dataset_stats(s_user, dataset)
    gpu = detect_gpu() or named_gpu("h100")  # no GPU: a CPU smoke test of this script, times meaningless
    result = {"setting": name, "warmup": warmup, "preset": preset, "sets": sets, "gpu": gpu.name if gpu else None,
              "torch": torch.__version__}
    t0 = time.time()
    p = build_trainer(s)
    trainer = p.trainer
    result["load_s"] = time.time() - t0
    result["memory_after_load_gb"] = p.memory_after_load_gb
    cuda = torch.cuda.is_available()

    def sync():
        if cuda:
            torch.cuda.synchronize()

    shapes: list[dict] = []
    ends: list[float] = []
    micro_times: list[float] = []
    original = trainer.training_step

    def timed_step(*args, **kwargs):
        inputs = args[1] if len(args) > 1 else kwargs["inputs"]
        ids = inputs["input_ids"]
        labels = inputs.get("labels")
        mask = inputs.get("attention_mask")
        sync()
        t = time.perf_counter()
        loss = original(*args, **kwargs)
        sync()
        micro_times.append(time.perf_counter() - t)
        shapes.append({"rows": int(ids.shape[0]), "cols": int(ids.shape[1]), "tokens": int(ids.numel()),
                       "real_tokens": int(mask.sum()) if mask is not None else int(ids.numel()),
                       "completion_tokens": int((labels != -100).sum()) if labels is not None else None})
        return loss

    trainer.training_step = timed_step

    class StepClock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            sync()
            ends.append(time.perf_counter())

        def on_train_begin(self, args, state, control, **kwargs):
            sync()
            ends.append(time.perf_counter())

    trainer.add_callback(StepClock())
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    try:
        trainer.train()
        result["oom"] = False
    except torch.OutOfMemoryError as e:
        result["oom"] = True
        result["oom_message"] = str(e).splitlines()[0]
    if cuda:
        result["peak_allocated_gb"] = torch.cuda.max_memory_allocated() / GiB
        result["peak_reserved_gb"] = torch.cuda.max_memory_reserved() / GiB
        free, total = torch.cuda.mem_get_info()
        result["card_used_now_gb"] = (total - free) / GiB
        result["reserved_now_gb"] = torch.cuda.memory_reserved() / GiB
        result["cuda_context_gb"] = result["card_used_now_gb"] - result["reserved_now_gb"]
    else:
        result.update(peak_allocated_gb=float("nan"), peak_reserved_gb=float("nan"), cuda_context_gb=float("nan"))
    step_s = [b - a for a, b in zip(ends, ends[1:])]
    result["step_s_all"] = step_s
    result["micro_s_all"] = micro_times
    result["shapes"] = shapes
    if step_s[warmup:]:
        meas = step_s[warmup:]
        sh = shapes[warmup:len(step_s)]
        result["step_s"] = sum(meas) / len(meas)
        result["tokens_per_step"] = sum(x["tokens"] for x in sh) / len(sh)
        result["padded_tokens_per_s"] = sum(x["tokens"] for x in sh) / sum(meas)
        result["real_tokens_per_s"] = sum(x["real_tokens"] for x in sh) / sum(meas)
        result.update(predictions(s_user, s, stats, sh, gpu))
    elif shapes:
        result.update(predictions(s_user, s, stats, shapes, gpu))
    return result


def pct(pred, meas):
    if pred is None or not meas:
        return "  n/a"
    return f"{100 * (pred - meas) / meas:+5.0f}%"


def table(results: list[dict]) -> str:
    head = (f"{'setting':<16} {'tok/step':>8} | {'peak GB':>7} {'model':>6} {'err':>6} {'estimate':>8} | "
            f"{'s/step':>6} {'model':>6} {'err':>6} {'estimate':>8} | {'tok/s':>6} {'est':>6}")
    lines = [head, "-" * len(head)]
    for r in results:
        if "step_s" not in r:
            lines.append(f"{r['setting']:<16} {'OOM' if r.get('oom') else 'no steps'}: measured peak "
                         f"{r.get('peak_allocated_gb', 0):.1f} GB; estimate "
                         f"{r.get('estimate_peak_allocated_gb', float('nan')):.1f} GB")
            continue
        tok = r["tokens_per_step"]
        lines.append(
            f"{r['setting']:<16} {tok:>8.0f} | {r['peak_allocated_gb']:>7.2f} "
            f"{r['model_peak_allocated_gb_at_measured_shape']:>6.2f} "
            f"{pct(r['model_peak_allocated_gb_at_measured_shape'], r['peak_allocated_gb'])} "
            f"{r['estimate_peak_allocated_gb']:>8.2f} | {r['step_s']:>6.3f} {r['model_step_s_at_measured_shapes']:>6.3f} "
            f"{pct(r['model_step_s_at_measured_shapes'], r['step_s'])} {r['estimate_step_s_accum1']:>8.3f} | "
            f"{r['padded_tokens_per_s']:>6.0f} {r['estimate_tokens_per_s']:>6.0f}")
    lines.append("peak GB: torch.cuda.max_memory_allocated; model: the memory model at the largest micro-batch this run "
                 "trained on; estimate: `ethsft estimate` for the preset (largest sample in the dataset). s/step at "
                 "accumulation 1; estimate s/step for the dataset's average micro-batch.")
    return "\n".join(lines)


def fit(results: list[dict]) -> dict:
    """Least-squares values for the CALIBRATE constants of ethsft/planning/speed.py and memory.py."""
    from ethsft.planning import hardware, memory, shapes, speed

    ok = [r for r in results if "step_s" in r]
    out: dict = {}
    if not ok:
        return out
    gpu = hardware.detect_gpu() or hardware.named_gpu("h100")
    # time: step - dequant - optimizer = tokens*fpt/(P*MFU) + LAUNCH*passes/3
    rows, ys = [], []
    for r in ok:
        s = settings_for(r["setting"], "unused", "unused", 1)
        passes = 3 if s.optimization.gradient_checkpointing else 2
        shape = shapes.model_shape(s)
        dq = passes * shape.linear_params * 2.5 / (gpu.bandwidth_gbs * 1e9 * speed.DEQUANT_BANDWIDTH_EFF)
        tok = r["tokens_per_step"]
        rows.append((tok * r["flops_per_token"] / (gpu.bf16_tflops * 1e12), passes / 3))
        ys.append(r["step_s"] - dq - speed.OPTIMIZER_STEP_S)
    if len(rows) >= 2:
        # 2x2 normal equations
        a11 = sum(x[0] * x[0] for x in rows)
        a12 = sum(x[0] * x[1] for x in rows)
        a22 = sum(x[1] * x[1] for x in rows)
        b1 = sum(x[0] * y for x, y in zip(rows, ys))
        b2 = sum(x[1] * y for x, y in zip(rows, ys))
        det = a11 * a22 - a12 * a12
        if det > 0:
            inv_mfu = (b1 * a22 - b2 * a12) / det
            launch = (a11 * b2 - a12 * b1) / det
            if inv_mfu > 0:
                out["MFU"] = 1 / inv_mfu
            out["LAUNCH_OVERHEAD_S"] = launch
    # memory: scale of the activation term, separately with and without checkpointing
    for ckpt in (True, False):
        num = den = 0.0
        for r in ok:
            s = settings_for(r["setting"], "unused", "unused", 1)
            if s.optimization.gradient_checkpointing != ckpt:
                continue
            parts = r["model_parts_gb_at_measured_shape"]
            act = parts["activations"]
            rest = sum(v for k, v in parts.items() if k != "activations")
            num += (r["peak_allocated_gb"] - rest) * act
            den += act * act
        if den:
            out["activation_scale_ckpt" if ckpt else "activation_scale_no_ckpt"] = num / den
    out["ALLOCATOR_OVERHEAD"] = max(r["peak_reserved_gb"] / r["peak_allocated_gb"] for r in ok)
    out["CUDA_CONTEXT_GIB"] = max(r["cuda_context_gb"] for r in ok)
    out["base_weights_measured_gb"] = [r["memory_after_load_gb"] for r in ok][0]
    out["base_weights_model_gb"] = ok[0]["model_base_weights_gb"]
    out["current"] = {"MFU": speed.MFU, "LAUNCH_OVERHEAD_S": speed.LAUNCH_OVERHEAD_S,
                      "ALLOCATOR_OVERHEAD": memory.ALLOCATOR_OVERHEAD, "CUDA_CONTEXT_GIB": memory.CUDA_CONTEXT_GIB,
                      "CKPT_LIVE_LAYERS": memory.CKPT_LIVE_LAYERS}
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", help="folder with train.jsonl (ethsft synth + ethsft prepare)")
    ap.add_argument("--out", default="calibration.json")
    ap.add_argument("--settings", default=",".join(DEFAULT), help=f"comma list from: {', '.join(SETTINGS)} or 'all'")
    ap.add_argument("--steps", type=int, default=8, help="measured steps per setting")
    ap.add_argument("--warmup", type=int, default=3, help="steps before measuring")
    ap.add_argument("--redo", action="store_true", help="measure settings already in --out again")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--one-out", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.list:
        for k, (preset, sets) in SETTINGS.items():
            print(f"{k:<16} {preset} {' '.join(sets)}{'  (default)' if k in DEFAULT else ''}")
        return 0
    if not args.dataset:
        ap.error("--dataset is required")
    if args.one:
        res = measure_one(args.one, args.dataset, args.steps, args.warmup)
        Path(args.one_out).write_text(json.dumps(res, indent=2, default=float), encoding="utf-8")
        return 0

    import torch

    if not torch.cuda.is_available() and "tiny" not in MODEL:
        print("calibrate_estimate: needs a CUDA GPU (CALIBRATE_MODEL=embedded:tiny-mistral for a CPU smoke test)",
              file=sys.stderr)
        return 2
    names = list(SETTINGS) if args.settings == "all" else [n.strip() for n in args.settings.split(",") if n.strip()]
    unknown = [n for n in names if n not in SETTINGS]
    if unknown:
        ap.error(f"unknown setting(s) {unknown}; --list shows them")
    out = Path(args.out)
    results = json.loads(out.read_text()) if out.exists() else {"results": []}
    done = {r["setting"] for r in results["results"]}
    from ethsft.model.embedded import resolve

    t = time.time()
    path = resolve(MODEL)  # builds the random 7B once
    print(f"model: {path} ({time.time() - t:.0f}s)", flush=True)
    for name in names:
        if name in done and not args.redo:
            print(f"[{name}] already in {out}; skipped (--redo to measure again)", flush=True)
            continue
        tmp = Path(tempfile.mkstemp(suffix=".json")[1])
        t = time.time()
        print(f"[{name}] measuring...", flush=True)
        proc = subprocess.run([sys.executable, __file__, "--one", name, "--one-out", str(tmp), "--dataset", args.dataset,
                               "--steps", str(args.steps), "--warmup", str(args.warmup)],
                              capture_output=True, text=True)
        if proc.returncode != 0 or not tmp.stat().st_size:
            print(f"[{name}] failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}", flush=True)
            continue
        res = json.loads(tmp.read_text())
        res["wall_s"] = time.time() - t
        results["results"] = [r for r in results["results"] if r["setting"] != name] + [res]
        results["fit"] = fit(results["results"])
        out.write_text(json.dumps(results, indent=2, default=float), encoding="utf-8")
        print(f"[{name}] done in {res['wall_s']:.0f}s: peak {res['peak_allocated_gb']:.2f} GB, "
              f"{res.get('step_s', float('nan')):.3f} s/step", flush=True)
    print()
    print(table(results["results"]))
    print("\nfitted constants (ethsft/planning/speed.py, memory.py):")
    print(json.dumps(results.get("fit", {}), indent=2, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
