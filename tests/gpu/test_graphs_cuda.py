"""CUDA-graphed micro-batches on the tiny embedded model in 4-bit: replays give the eager ``PackedLoss`` and LoRA
gradients on the same rows; with the decoder layers compiled (``optimization.compile``, same LoRA weights) they
give them within bf16 rounding; LoRA dropout draws new masks each replay, compiled or not; several graphed
trainings run in one process as ``ethsft tune``'s trials do.

The compiled model runs in a child process (this file run as a script with ``--compiled REFERENCE``): captured
after the uncompiled model's graphs in one process, its backward capture fails (cudaErrorStreamCaptureImplicit),
though it captures alone."""

from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import torch

from ethsft.experiments import bench
from ethsft.fastpath import graphs

N_ITEMS = 700


def _trainer(work, dropout: float, compile: int = 0):
    dataset = bench.prepare_data(work, 64)
    knobs = dict(bench.MODES["b"], base="b", rows=1024, ckpt="none", graphs=1, compile=compile)
    prepared, _, _ = bench.build_mode(f"b{dropout}c{compile}", knobs, "tiny-mistral", dataset, 1, 12, work,
                                      sets=(f"lora.dropout={dropout}",))
    prepared.trainer.model.train()
    return prepared.trainer


def test_replays_give_the_eager_loss_and_lora_gradients(tmp_path):
    trainer = _trainer(tmp_path, 0.0)
    runner = trainer.graphed
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    n_items = torch.tensor(N_ITEMS, device="cuda")
    ref = {"params": [p.detach().cpu() for p in params], "rows": [], "losses": [], "grads": []}
    for batch, _ in zip(trainer.get_train_dataloader(), range(3)):
        inputs = trainer._prepare_inputs(batch)
        static = graphs.static_inputs(inputs, runner.shape, runner.pad_id, n_items)
        eager = graphs.PackedLoss(trainer.model, runner.shape.longest, runner.module.autocast_dtype)(*static)
        eager_grads = torch.autograd.grad(eager, params)
        eager = eager.detach()  # no eager autograd graph may be alive while the graphs are captured
        replay = runner(inputs, n_items)
        replay_grads = torch.autograd.grad(replay, params)
        torch.testing.assert_close(replay, eager, rtol=1e-3, atol=1e-4)
        assert max((a.float() - b.float()).abs().max().item() for a, b in zip(eager_grads, replay_grads)) < 1e-3
        ref["rows"].append({k: v.cpu() for k, v in inputs.items() if isinstance(v, torch.Tensor)})
        ref["losses"].append(eager.item())
        ref["grads"].append([g.cpu() for g in eager_grads])
    assert runner.replays >= 3
    torch.save(ref, tmp_path / "reference.pt")
    child = subprocess.run([sys.executable, __file__, "--compiled", str(tmp_path / "reference.pt")],
                           capture_output=True, text=True)
    assert child.returncode == 0, child.stdout + child.stderr[-3000:]


def _new_masks(trainer) -> set[float]:
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    lora_b = [p for n, p in trainer.model.named_parameters() if p.requires_grad and "lora_B" in n]
    n_items = torch.tensor(N_ITEMS, device="cuda")
    # lora_B starts at zero, so dropout shows in lora_B's gradient (through lora_A(dropout(x))), not in the loss
    return {round(torch.autograd.grad(trainer.graphed(inputs, n_items), lora_b)[0].float().norm().item(), 6)
            for _ in range(3)}


def test_dropout_draws_new_masks_each_replay(tmp_path):
    assert len(_new_masks(_trainer(tmp_path, 0.3))) == 3


def compiled(reference: Path) -> int:
    """The child process: the compiled model's replays against the eager references the parent saved, and new
    dropout masks each replay of the compiled layers. Prints one line per check; 1 on a mismatch."""
    ref = torch.load(reference, weights_only=False)
    trainer = _trainer(reference.parent / "compiled", 0.0, compile=1)
    params = [p for p in trainer.model.parameters() if p.requires_grad]
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
    masks = _new_masks(_trainer(reference.parent / "dropout", 0.3, compile=1))
    print(f"compiled, dropout 0.3, one row replayed 3 times: lora_B grad norms {sorted(masks)}")
    return 0 if ok and len(masks) == 3 else 1


def test_several_graphed_trainings_in_one_process(tmp_path, small_dataset):
    from ethsft.config import presets
    from ethsft.config.schema import load_settings
    from ethsft.training.recipe import build_trainer

    for i, (r, dropout) in enumerate([(16, 0.05), (8, 0.0), (32, 0.1)]):
        s = load_settings(presets.config("training_config.yaml"), {
            "model.base_model": "embedded:tiny-mistral", "data.dataset_dir": str(small_dataset),
            "data.max_length": 1024, "training.max_steps": 3, "training.output_dir": str(tmp_path / f"run{i}"),
            "lora.r": r, "lora.dropout": dropout, "logging.eval_steps": 1000, "logging.save_strategy": "no",
            "logging.load_best_model_at_end": False, "optimization.compile": False})
        prepared = build_trainer(s)
        prepared.trainer.train()
        assert prepared.trainer.graphed.replays > 0
        del prepared
        gc.collect()
        torch.cuda.empty_cache()


if __name__ == "__main__":
    sys.exit(compiled(Path(sys.argv[2])))
