"""Where a training step's time goes: wall time vs GPU busy time, and the host-side operators that cost most.

Builds a bench mode's trainer (``ethsft.bench.build_mode``), trains a few steps under ``torch.profiler`` and prints
per step: wall seconds, seconds the GPU spent in kernels, the idle remainder, and the top operators by host time.

Usage (GPU, deps installed): python benchmarks/profile_step.py --mode "b:rows=8192;ckpt=none" [--out prof.json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from ethsft import bench


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", default="b:rows=8192;ckpt=none")
    ap.add_argument("--shape", default="mistral-7b")
    ap.add_argument("--samples", type=int, default=800)
    ap.add_argument("--active", type=int, default=2)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ethsft-prof-"))
    dataset = bench.prepare_data(work, args.samples)
    (name, knobs), = bench.parse_modes(args.mode)
    wait, warm = 3, 1
    prepared, done, plan = bench.build_mode(name, knobs, args.shape, dataset, wait + warm + args.active + 1, 12.0, work)
    trainer = prepared.trainer
    acts = [torch.profiler.ProfilerActivity.CPU] + ([torch.profiler.ProfilerActivity.CUDA] if torch.cuda.is_available() else [])
    marks = []

    class Step(TrainerCallback):
        def __init__(self, prof):
            self.prof = prof

        def on_step_end(self, a, state, control, **kw):
            torch.cuda.synchronize() if torch.cuda.is_available() else None
            marks.append(time.perf_counter())
            self.prof.step()

    with torch.profiler.profile(activities=acts, schedule=torch.profiler.schedule(wait=wait, warmup=warm,
                                                                                   active=args.active)) as prof:
        trainer.add_callback(Step(prof))
        trainer.train()
    events = prof.key_averages()
    gpu_us = sum(e.self_device_time_total for e in events if e.device_type == torch.autograd.DeviceType.CUDA)
    active_walls = [b - a for a, b in zip(marks[wait + warm - 1:], marks[wait + warm:])][:args.active]
    wall = sum(active_walls) / max(len(active_walls), 1)
    gpu = gpu_us / 1e6 / args.active
    print(f"\n{name}: plan {plan.get('checkpointed')} layers checkpointed; per step: wall {wall:.3f} s, "
          f"GPU kernels {gpu:.3f} s, GPU idle {wall - gpu:.3f} s ({100 * (wall - gpu) / wall:.0f}%)")
    print(events.table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=60))
    print(events.table(sort_by="self_device_time_total", row_limit=15, max_name_column_width=60))
    if args.out:
        Path(args.out).write_text(json.dumps({"mode": name, "plan": plan, "fastpath": done, "wall_s": wall,
                                              "gpu_kernel_s": gpu, "step_walls": active_walls}, indent=2),
                                  encoding="utf-8")


if __name__ == "__main__":
    main()
