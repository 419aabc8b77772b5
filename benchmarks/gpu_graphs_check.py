"""GPU check of CUDA-graphed micro-batches (``ethsft.graphs``) on the tiny embedded model in 4-bit: the replayed
loss and LoRA gradients equal the eager ``PackedLoss`` on the same rows (first and later rows); with the decoder
layers compiled (``optimization.compile``, same LoRA weights) they equal it within bf16 rounding; with LoRA dropout
on, replays of one row draw new masks, compiled or not. Prints one line per check; exits 1 on a mismatch.

The compiled model runs in a child process (``--compiled REFERENCE``): captured after the uncompiled model's graphs
in one process, its backward capture fails (cudaErrorStreamCaptureImplicit), though it captures alone.
Usage (repo root, GPU): python benchmarks/gpu_graphs_check.py"""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import torch

from ethsft.experiments import bench

from ethsft.fastpath import graphs

N_ITEMS = 700


def _trainer(work: Path, dropout: float, compile: int = 0):
    dataset = bench.prepare_data(work, 64)
    knobs = dict(bench.MODES["b"], base="b", rows=1024, ckpt="none", graphs=1, compile=compile)
    prepared, done, _ = bench.build_mode(f"b{dropout}c{compile}", knobs, "tiny-mistral", dataset, 1, 12, work,
                                         sets=(f"lora.dropout={dropout}",))
    prepared.trainer.model.train()
    return prepared.trainer, done


def _trainable(trainer) -> list[torch.Tensor]:
    return [p for p in trainer.model.parameters() if p.requires_grad]


def _new_masks(work: Path, compile: int) -> bool:
    trainer, _ = _trainer(work / f"dropout{compile}", 0.3, compile)
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    lora_b = [p for n, p in trainer.model.named_parameters() if p.requires_grad and "lora_B" in n]
    n_items = torch.tensor(N_ITEMS, device="cuda")
    # lora_B starts at zero, so dropout shows in lora_B's gradient (through lora_A(dropout(x))), not in the loss
    norms = [round(torch.autograd.grad(trainer.graphed(inputs, n_items), lora_b)[0].float().norm().item(), 6)
             for _ in range(3)]
    differ = len(set(norms)) == 3
    print(f"dropout 0.3, compile {compile}, one row replayed 3 times, lora_B grad norms {norms}: "
          f"{'new masks each replay' if differ else 'SAME MASKS'}")
    return differ


def compiled(reference: Path) -> int:
    """The compiled model's replays against the eager references saved by ``main``."""
    ref = torch.load(reference, weights_only=False)
    trainer, done = _trainer(reference.parent / "compiled", 0.0, compile=1)
    params = _trainable(trainer)
    with torch.no_grad():
        for p, q in zip(params, ref["params"]):
            p.copy_(q)
    ok = True
    n_items = torch.tensor(N_ITEMS, device="cuda")
    for i, (inputs, eager, eager_grads) in enumerate(zip(ref["rows"], ref["losses"], ref["grads"])):
        replay = trainer.graphed({k: v.cuda() for k, v in inputs.items()}, n_items)
        grads = torch.autograd.grad(replay, params)
        rel = max(((a.float().cpu() - b.float()).abs().max() / b.float().abs().max().clamp(min=1e-12)).item()
                  for a, b in zip(grads, eager_grads))
        same = abs(replay.item() - eager) <= 1e-2 * abs(eager) and rel < 5e-2
        ok &= same
        print(f"compiled row {i}: eager loss {eager:.6f} compiled replay {replay.item():.6f} "
              f"max grad diff / max grad {rel:.2e} {'OK' if same else 'MISMATCH'}")
    print("compiled fast path", done)
    ok &= _new_masks(reference.parent, compile=1)
    return 0 if ok else 1


def main() -> int:
    ok = True
    work = Path(tempfile.mkdtemp(prefix="ethsft-graphs-"))
    trainer, done = _trainer(work, 0.0)
    runner = trainer.graphed
    params = _trainable(trainer)
    rows = [trainer._prepare_inputs(b) for b, _ in zip(trainer.get_train_dataloader(), range(3))]
    n_items = torch.tensor(N_ITEMS, device="cuda")
    ref = {"params": [p.detach().cpu() for p in params], "rows": [], "losses": [], "grads": []}
    for i, inputs in enumerate(rows):
        static = graphs.static_inputs(inputs, runner.shape, runner.pad_id, n_items)
        eager = graphs.PackedLoss(trainer.model, runner.shape.longest, runner.module.autocast_dtype)(*static)
        eager_grads = torch.autograd.grad(eager, params)
        eager = eager.detach()  # no eager autograd graph may be alive while the graphs are captured
        replay = runner(inputs, n_items)
        replay_grads = torch.autograd.grad(replay, params)
        diff = max((a.float() - b.float()).abs().max().item() for a, b in zip(eager_grads, replay_grads))
        same = torch.allclose(eager, replay, rtol=1e-3, atol=1e-4) and diff < 1e-3
        ok &= same
        print(f"row {i} ({inputs['input_ids'].shape[1]} tokens, {inputs['cu_seq_lens_q'].numel() - 1} samples): "
              f"eager loss {eager.item():.6f} replay {replay.item():.6f} max grad diff {diff:.2e} "
              f"{'OK' if same else 'MISMATCH'}")
        ref["rows"].append({k: v.cpu() for k, v in inputs.items() if isinstance(v, torch.Tensor)})
        ref["losses"].append(eager.item())
        ref["grads"].append([g.cpu() for g in eager_grads])
    print("replays", runner.replays, "eager", runner.eager, runner.shape, "fast path", done)
    ok &= _new_masks(work, compile=0)
    torch.save(ref, work / "reference.pt")
    child = subprocess.run([sys.executable, __file__, "--compiled", str(work / "reference.pt")])
    return 0 if ok and child.returncode == 0 else 1


if __name__ == "__main__":
    sys.exit(compiled(Path(sys.argv[2])) if sys.argv[1:2] == ["--compiled"] else main())
