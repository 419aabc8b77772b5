"""GPU check of CUDA-graphed micro-batches (``ethsft.graphs``) on the tiny embedded model in 4-bit: the replayed
loss and LoRA gradients equal the eager ``PackedLoss`` on the same rows (first and later rows), and with LoRA
dropout on, replays of one row draw new masks. Prints one line per check; exits 1 on a mismatch.
Usage (repo root, GPU): python benchmarks/gpu_graphs_check.py"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import torch

from ethsft import bench, graphs


def _trainer(work: Path, dropout: float):
    dataset = bench.prepare_data(work, 64)
    knobs = dict(bench.MODES["b"], base="b", rows=1024, ckpt="none", graphs=1)
    prepared, done, _ = bench.build_mode(f"b{dropout}", knobs, "tiny-mistral", dataset, 1, 12, work,
                                         sets=(f"lora.dropout={dropout}",))
    return prepared.trainer, done


def main() -> int:
    ok = True
    work = Path(tempfile.mkdtemp(prefix="ethsft-graphs-"))
    trainer, done = _trainer(work, 0.0)
    runner = trainer.ethsft_graphs
    model = trainer.model
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    rows = [trainer._prepare_inputs(b) for b, _ in zip(trainer.get_train_dataloader(), range(3))]
    n_items = torch.tensor(700, device="cuda")
    for i, inputs in enumerate(rows):
        static = graphs.static_inputs(inputs, runner.shape, runner.pad_id, n_items)
        eager = graphs.PackedLoss(model, runner.shape.longest, runner.module.autocast_dtype)(*static)
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
    print("replays", runner.replays, "eager", runner.eager, runner.shape, "fast path", done)
    trainer, _ = _trainer(work / "dropout", 0.3)
    runner = trainer.ethsft_graphs
    trainer.model.train()
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    lora_b = [p for n, p in trainer.model.named_parameters() if p.requires_grad and "lora_B" in n]
    # lora_B starts at zero, so dropout shows in lora_B's gradient (through lora_A(dropout(x))), not in the loss
    norms = [round(torch.autograd.grad(runner(inputs, n_items), lora_b)[0].float().norm().item(), 6) for _ in range(3)]
    differ = len(set(norms)) == 3
    ok &= differ
    print(f"dropout 0.3, one row replayed 3 times, lora_B grad norms {norms}: "
          f"{'new masks each replay' if differ else 'SAME MASKS'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
