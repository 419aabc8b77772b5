"""Where a training step's time goes: wall time vs GPU busy time, the host-side operators that cost most, the
kernels that cost most, and (``--gaps``) where the GPU waited for the host.

Builds a bench mode's trainer (``ethsft.experiments.bench.build_mode``), trains a few steps under ``torch.profiler`` and prints
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

from ethsft.experiments import bench


def gpu_timeline(events, min_us: float = 20.0) -> tuple[float, list[tuple[float, float, float]]]:
    """Microseconds some kernel ran (kernel intervals merged: graph replays and overlaps counted once), and the
    GPU-idle gaps between kernels longer than ``min_us`` as (length, start, end)."""
    kernels = sorted((e.time_range.start, e.time_range.end) for e in events
                     if e.device_type == torch.autograd.DeviceType.CUDA and e.time_range.end > e.time_range.start)
    if not kernels:
        return 0.0, []
    gaps, reach = [], kernels[0][1]
    busy = reach - kernels[0][0]
    for start, end in kernels[1:]:
        if start - reach > min_us:
            gaps.append((start - reach, reach, start))
        busy += max(0, end - max(start, reach))
        reach = max(reach, end)
    return busy, gaps


def print_gaps(events, gaps: list, top: int) -> None:
    """The ``top`` longest GPU-idle gaps and the host operators that overlapped them (outermost first)."""
    print(f"\nGPU idle gaps over 20 us: {len(gaps)}, {sum(g for g, _, _ in gaps) / 1e3:.1f} ms in all")
    host = [e for e in events if e.device_type == torch.autograd.DeviceType.CPU]
    for gap, a, b in sorted(gaps, reverse=True)[:top]:
        during = sorted((e.time_range.start, e.name) for e in host
                        if e.time_range.start < b and e.time_range.end > a and e.time_range.end - e.time_range.start > 50)
        names = list(dict.fromkeys(n for _, n in during))[:12]
        print(f"  {gap / 1e3:7.2f} ms  host: {' | '.join(names)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", default="b:rows=8192;ckpt=none")
    ap.add_argument("--shape", default="mistral-7b")
    ap.add_argument("--samples", type=int, default=800)
    ap.add_argument("--active", type=int, default=2)
    ap.add_argument("--rows", type=int, default=15, help="operators listed in the GPU-time table")
    ap.add_argument("--gaps", type=int, default=0, help="list this many of the longest GPU-idle gaps and what the "
                    "host ran during each")
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
    gpu_us, gaps = gpu_timeline(prof.events())
    active_walls = [b - a for a, b in zip(marks[wait + warm - 1:], marks[wait + warm:])][:args.active]
    wall = sum(active_walls) / max(len(active_walls), 1)
    gpu = gpu_us / 1e6 / args.active
    print(f"\n{name}: plan {plan.get('checkpointed')} layers checkpointed; per step: wall {wall:.3f} s, "
          f"GPU kernels {gpu:.3f} s, GPU idle {wall - gpu:.3f} s ({100 * (wall - gpu) / wall:.0f}%)")
    print(events.table(sort_by="self_cpu_time_total", row_limit=25, max_name_column_width=60))
    print(events.table(sort_by="self_device_time_total", row_limit=args.rows, max_name_column_width=90))
    if args.gaps:
        print_gaps(prof.events(), gaps, args.gaps)
    if args.out:
        Path(args.out).write_text(json.dumps({"mode": name, "plan": plan, "fastpath": done, "wall_s": wall,
                                              "gpu_kernel_s": gpu, "step_walls": active_walls}, indent=2),
                                  encoding="utf-8")


if __name__ == "__main__":
    main()
