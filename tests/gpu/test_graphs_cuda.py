"""CUDA-graphed micro-batches on the tiny embedded model in 4-bit: replays give the eager ``PackedLoss`` and LoRA
gradients on the same rows, LoRA dropout draws new masks each replay, and several graphed trainings run in one
process as ``ethsft tune``'s trials do. (The compiled-layer comparison runs in a child process:
benchmarks/gpu_graphs_check.py --compiled.)"""

from __future__ import annotations

import gc

import torch

from ethsft.experiments import bench
from ethsft.fastpath import graphs

N_ITEMS = 700


def _trainer(work, dropout: float):
    dataset = bench.prepare_data(work, 64)
    knobs = dict(bench.MODES["b"], base="b", rows=1024, ckpt="none", graphs=1, compile=0)
    prepared, _, _ = bench.build_mode(f"b{dropout}", knobs, "tiny-mistral", dataset, 1, 12, work,
                                      sets=(f"lora.dropout={dropout}",))
    prepared.trainer.model.train()
    return prepared.trainer


def test_replays_give_the_eager_loss_and_lora_gradients(tmp_path):
    trainer = _trainer(tmp_path, 0.0)
    runner = trainer.graphed
    params = [p for p in trainer.model.parameters() if p.requires_grad]
    n_items = torch.tensor(N_ITEMS, device="cuda")
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
    assert runner.replays >= 3


def test_dropout_draws_new_masks_each_replay(tmp_path):
    trainer = _trainer(tmp_path, 0.3)
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    lora_b = [p for n, p in trainer.model.named_parameters() if p.requires_grad and "lora_B" in n]
    n_items = torch.tensor(N_ITEMS, device="cuda")
    # lora_B starts at zero, so dropout shows in lora_B's gradient (through lora_A(dropout(x))), not in the loss
    norms = {round(torch.autograd.grad(trainer.graphed(inputs, n_items), lora_b)[0].float().norm().item(), 6)
             for _ in range(3)}
    assert len(norms) == 3


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
