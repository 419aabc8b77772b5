"""Run under torchrun by test_distributed.py: trains through ethsft's real trainer, then each rank dumps
its LoRA weights and losses so the test can compare ranks."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from transformers import TrainerCallback

sys.path.insert(0, str(Path(__file__).parent))
from conftest import tiny_settings  # noqa: E402

from ethsft.training.recipe import build_trainer  # noqa: E402


class StepCounter(TrainerCallback):
    """Optimizer steps this process actually ran (a resumed run restores log_history from the checkpoint)."""

    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


def main(dataset: str, out: str, deepspeed_config: str, max_steps: str, resume: str, *extra_sets: str) -> None:
    settings = tiny_settings(Path(dataset), Path(out), f"training.max_steps={max_steps}",
                             "logging.save_steps=2", "logging.eval_steps=2", "training.per_device_train_batch_size=2",
                             "training.overwrite=true", "logging.load_best_model_at_end=false", *extra_sets)
    prepared = build_trainer(settings, resume or None, deepspeed_config or None)
    trainer = prepared.trainer
    counter = StepCounter()
    trainer.add_callback(counter)
    trainer.train(resume_from_checkpoint=str(prepared.resume) if prepared.resume else None)
    trainer.save_model(out)
    rank = trainer.accelerator.process_index
    lora = {n: p.detach().float().cpu() for n, p in trainer.model.named_parameters() if "lora_" in n}
    torch.save(lora, Path(out) / f"lora_rank{rank}.pt")
    # ZeRO-3 only: which parameters DeepSpeed partitioned (ds_tensor holds this rank's slice), 4-bit ones apart
    sharded = [(type(p).__name__, p.ds_numel, p.ds_tensor.numel()) for p in trainer.model.parameters()
               if hasattr(p, "ds_tensor")]
    (Path(out) / f"shards_rank{rank}.json").write_text(json.dumps({
        "params": len(list(trainer.model.parameters())), "sharded": len(sharded),
        "sharded_4bit": sum(1 for c, _, _ in sharded if c == "Params4bit"),
        "full_numel": sum(n for _, n, _ in sharded), "local_numel": sum(m for _, _, m in sharded)}))
    losses = {str(h["step"]): h["loss"] for h in trainer.state.log_history if "loss" in h}
    (Path(out) / f"losses_rank{rank}.json").write_text(json.dumps(losses))
    (Path(out) / f"steps_run_rank{rank}.json").write_text(json.dumps(counter.steps))


if __name__ == "__main__":
    main(*sys.argv[1:])
