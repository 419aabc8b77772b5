"""Training on the tiny 4-bit model on CPU: what changes, what does not, what is written."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import tiny_settings
from ethsft.config.schema import ConfigError


def test_steps_change_lora_weights_and_leave_base_weights_alone(small_dataset, tmp_path):
    from ethsft.training.recipe import build_trainer

    prepared = build_trainer(tiny_settings(small_dataset, tmp_path / "out", "training.max_steps=3"))
    trainer = prepared.trainer
    model = trainer.model
    assert model.base_model.model.model.layers[0].self_attn.q_proj.base_layer.weight.__class__.__name__ == "Params4bit"
    lora = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    frozen = {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}
    assert lora and all("lora_" in n or "modules_to_save" in n for n in lora)  # the tiny preset trains lm_head too
    trainer.train()
    after = dict(model.named_parameters())
    assert all(not torch.equal(lora[n], after[n].detach()) for n in lora if "lora_B" in n)
    assert all(torch.equal(frozen[n], after[n].detach()) for n in frozen)


def test_batches_mask_prompt_and_padding_and_train_eos(small_dataset, tmp_path, tokenizer):
    from ethsft.training.recipe import build_trainer

    trainer = build_trainer(tiny_settings(small_dataset, tmp_path / "out")).trainer
    batch = next(iter(trainer.get_train_dataloader()))
    inst_end = tokenizer.convert_tokens_to_ids("]")  # the last token of "[/INST]"
    for ids, labels, attn in zip(batch["input_ids"], batch["labels"], batch["attention_mask"]):
        ids, labels, attn = ids.tolist(), labels.tolist(), attn.tolist()
        real = [i for i, a in enumerate(attn) if a]
        assert all(labels[i] == -100 for i, a in enumerate(attn) if not a)  # padding
        last_prompt = max(i for i in real if ids[i] == inst_end)  # end of " [/INST]"
        assert all(labels[i] == -100 for i in real if i <= last_prompt)  # prompt
        assert all(labels[i] == ids[i] for i in real if i > last_prompt)  # answer
        assert labels[real[-1]] == tokenizer.eos_token_id == 2  # EOS is trained


def test_run_writes_adapter_logs_summary_and_plot(small_dataset, tmp_path):
    from ethsft.training.recipe import run

    out = tmp_path / "run"
    summary = run(tiny_settings(small_dataset, out))
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "training_logs.txt",
                 "run_summary.json", "loss_curves.png"):
        assert (out / name).is_file(), name
    saved = json.loads((out / "run_summary.json").read_text())
    assert saved["global_step"] == summary["global_step"] == 4
    assert saved["samples"] == {"train": 16, "validation": 8, "test": 4}
    assert saved["settings"]["lora"]["r"] == 32
    assert (out / "loss_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    log = (out / "training_logs.txt").read_text()
    assert "Train samples: 16" in log and "Trainable parameters:" in log and "Model saved to:" in log
    assert "Step 4/4 | Loss:" in log

    with pytest.raises(ConfigError) as e:  # a finished run is never clobbered silently
        run(tiny_settings(small_dataset, out))
    assert "already holds a finished run (run_summary.json); pass --overwrite" in str(e.value)


def test_cli_train_end_to_end(small_dataset, tmp_path):
    from click.testing import CliRunner

    from ethsft.cli import cli

    out = tmp_path / "cli-run"
    args = ["train", "--config", "configs/tiny_cpu.yaml", "--dataset", str(small_dataset), "--output", str(out),
            "--num-epochs", "1", "--batch-size", "8", "--gradient-accumulation", "1", "--learning-rate", "1e-3"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["global_step"] == 2
    assert summary["settings"]["training"]["learning_rate"] == 1e-3
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 1 and "already holds a finished run" in again.output
    assert CliRunner().invoke(cli, args + ["--overwrite"]).exit_code == 0


def test_the_resume_command_repeats_how_the_run_was_started():
    from ethsft.training.recipe import resume_command

    assert resume_command(["/venv/lib/ethsft/__main__.py", "train", "--config", "c.yaml", "--overwrite"]) == (
        "python -m ethsft train --config c.yaml --resume-from-checkpoint latest")
    assert resume_command(["/venv/bin/ethsft", "train", "--resume-from-checkpoint", "x", "--output", "o"]) == (
        "ethsft train --output o --resume-from-checkpoint latest")
    assert resume_command(["launch/train.py", "--config", "c.yaml"]) == (
        "python -m ethsft.train --config c.yaml --resume-from-checkpoint latest")
