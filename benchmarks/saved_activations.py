"""What one decoder layer keeps for backward, per token: where the fast path's activation memory goes.

Builds a bench mode's trainer (the same `ethsft.experiments.bench.build_mode` the benchmark trains), turns checkpointing off,
runs one forward pass on a packed row with saved-tensor hooks and attributes every saved tensor (deduplicated by
storage, parameters left out) to the innermost module running when autograd saved it.

Usage (GPU, deps installed): python benchmarks/saved_activations.py --modes "b,b:liger=0" --out saved.json
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
from collections import defaultdict
from pathlib import Path

import torch

from ethsft.experiments import bench

from ethsft.fastpath.checkpointing import set_checkpointed_layers


def saved_by_module(trainer) -> dict:
    model = trainer.model
    set_checkpointed_layers(model, 0)
    model.train()
    batch = next(iter(trainer.get_train_dataloader()))
    inputs = trainer._prepare_inputs(batch)
    tokens = int(inputs["input_ids"].numel())
    names = {m: n for n, m in model.named_modules()}
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    stack: list[str] = []
    seen: set[int] = set()
    saved: dict[str, list] = defaultdict(list)

    def pre(module, args):
        stack.append(names.get(module, "?"))

    def post(module, args, output):
        if stack:
            stack.pop()

    def pack(t):
        try:
            ptr = t.untyped_storage().data_ptr()
            size = t.untyped_storage().nbytes()
        except Exception:  # tensors without storage (e.g. wrapped): count their own bytes
            ptr, size = id(t), t.numel() * t.element_size()
        if ptr not in params and ptr not in seen and size:
            seen.add(ptr)
            saved[stack[-1] if stack else "<outside modules>"].append(
                (list(t.shape), str(t.dtype).removeprefix("torch."), size))
        return t

    handles = [m.register_forward_pre_hook(pre) for m in names] + [m.register_forward_hook(post) for m in names]
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            with trainer.compute_loss_context_manager(), trainer.autocast_smart_context_manager():
                loss = trainer.compute_loss(model, inputs)
    finally:
        for h in handles:
            h.remove()
    del loss
    per_layer: dict[int, float] = defaultdict(float)
    layer1: dict[str, dict] = {}
    other = 0.0
    for name, items in saved.items():
        found = re.search(r"layers\.(\d+)(?:\.|$)(.*)", name)
        kib = sum(s for _, _, s in items) / tokens / 1024
        if not found:
            other += kib
            continue
        per_layer[int(found.group(1))] += kib
        if found.group(1) == "1":
            layer1[found.group(2) or "<layer>"] = {"kib_per_token": round(kib, 2),
                                                   "tensors": [f"{d}{s}" for s, d, _ in items]}
    return {"tokens": tokens, "kib_per_token_per_layer": {k: round(v, 2) for k, v in sorted(per_layer.items())},
            "mean_kib_per_token_per_layer": sum(per_layer.values()) / max(len(per_layer), 1),
            "outside_layers_kib_per_token": round(other, 2), "layer_1": layer1}


def sync_points(trainer, checkpointed: int = 0) -> dict:
    """Host-GPU synchronisations during one training step (forward + backward), by Python call site: each one
    stops the host until the GPU is idle, so host and GPU time add up instead of overlapping."""
    import traceback
    import warnings
    from collections import Counter

    model = trainer.model
    set_checkpointed_layers(model, checkpointed)
    model.train()
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    found: Counter = Counter()

    def show(message, category, filename, lineno, file=None, line=None):
        frames = [f for f in traceback.extract_stack()[:-1] if "/warnings.py" not in f.filename]
        found[" <- ".join(f"{f.filename.split('site-packages/')[-1]}:{f.lineno}" for f in reversed(frames[-3:]))] += 1

    torch.cuda.synchronize()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = show
        torch.cuda.set_sync_debug_mode(1)
        try:
            trainer.current_gradient_accumulation_steps = 1  # set by train() in a real run
            trainer.training_step(model, inputs)
        finally:
            torch.cuda.set_sync_debug_mode(0)
    model.zero_grad(set_to_none=True)
    return dict(found.most_common())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--modes", default="b")
    ap.add_argument("--shape", default="mistral-7b")
    ap.add_argument("--samples", type=int, default=600)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ethsft-saved-"))
    dataset = bench.prepare_data(work, args.samples)
    report = {}
    for name, knobs in bench.parse_modes(args.modes):
        knobs["ckpt"] = "none"
        prepared, done, _ = bench.build_mode(name, knobs, args.shape, dataset, 1, 80.0, work)
        try:
            report[name] = {"fastpath": done, **saved_by_module(prepared.trainer)}
        except Exception:
            import traceback

            traceback.print_exc()
            continue
        r = report[name]
        if torch.cuda.is_available():
            r["syncs"] = sync_points(prepared.trainer)
            r["syncs_checkpointed"] = sync_points(prepared.trainer, 4)
            print(f"{name}: syncs in one training step (no checkpointing / 4 layers checkpointed):")
            for where, n in list(r["syncs"].items())[:12]:
                print(f"  {n:>4}  {where}")
            print("  checkpointed:", sum(r["syncs_checkpointed"].values()), "vs", sum(r["syncs"].values()))
        print(f"\n{name}: {r['mean_kib_per_token_per_layer']:.1f} KiB/token/layer saved "
              f"(+{r['outside_layers_kib_per_token']:.1f} KiB/token outside layers), {r['tokens']} tokens")
        for mod, v in r["layer_1"].items():
            print(f"  {mod:<40}{v['kib_per_token']:>8.2f}  {' '.join(v['tensors'])[:150]}")
        del prepared
        torch.cuda.empty_cache() if torch.cuda.is_available() else None
        if args.out:  # after each mode: a later failure keeps what was measured
            Path(args.out).write_text(json.dumps(report, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
