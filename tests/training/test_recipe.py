"""Training on the tiny 4-bit model on CPU: what changes, what does not, what is written."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import INSTRUCTION, REPO, tiny_settings, write_split
from ethsft.config.schema import ConfigError
from click.testing import CliRunner
import math
from ethsft.data.records import read_records, tokenize_split

GOOD = {"instruction": INSTRUCTION, "input": '{"function":"transfer"}', "output": '{"action":"transfer"}'}


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


def test_the_resume_command_repeats_how_the_run_was_started():
    from ethsft.training.recipe import resume_command

    assert resume_command(["/venv/lib/ethsft/__main__.py", "train", "--config", "c.yaml", "--overwrite"]) == (
        "python -m ethsft train --config c.yaml --resume-from-checkpoint latest")
    assert resume_command(["/venv/bin/ethsft", "train", "--resume-from-checkpoint", "x", "--output", "o"]) == (
        "ethsft train --output o --resume-from-checkpoint latest")
    assert resume_command(["launch/train.py", "--config", "c.yaml"]) == (
        "python -m ethsft.train --config c.yaml --resume-from-checkpoint latest")


def test_every_prompt_overlong_still_trains_evaluates_and_writes_the_summary(small_dataset, tmp_path):
    """The run that trained on no answer tokens and then died with KeyError 'eval_loss' (metric_for_best_model)."""
    from ethsft.training.recipe import run

    out = tmp_path / "out"
    s = tiny_settings(small_dataset, out, "data.max_length=40", "training.max_steps=2", "logging.eval_steps=2",
                      "logging.save_steps=2")
    summary = run(s)
    assert summary["overlong_samples"] == {"train": 16, "validation": 8}  # every prompt is longer than 40
    assert summary["overlong_dropped"] == {"train": 0, "validation": 0}
    assert math.isfinite(summary["final_eval_loss"])
    assert json.loads((out / "run_summary.json").read_text())["overlong_samples"] == {"train": 16, "validation": 8}


def test_no_validation_sample_left_fails_before_the_model_loads(small_dataset, tmp_path):
    from ethsft.cli.train import main

    val = [{**GOOD, "output": json.dumps({"action": "transfer", "note": "x" * 80})}] * 3
    write_split(small_dataset / "validation.jsonl", val)
    result = CliRunner().invoke(main, ["--config", str(REPO / "configs" / "tiny_cpu.yaml"), "--dataset",
                                       str(small_dataset), "--output", str(tmp_path / "out"), "--set",
                                       "data.max_length=24", "--base-model", "embedded:tiny-mistral"])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1:] == ["Test samples: 4"]  # read, then tokenized: no model loaded
    assert result.stderr.splitlines()[-1:] == [
        "Error: validation: all 3 samples are longer than data.max_length=24 even with their prompt cut (the answer "
        "alone does not fit); nothing is left to evaluate on"]


def test_missing_validation_split_turns_evaluation_off_with_a_notice(small_dataset, tmp_path):
    from transformers import EarlyStoppingCallback

    from ethsft.training.recipe import build_trainer

    (small_dataset / "validation.jsonl").unlink()
    out = tmp_path / "out"
    prepared = build_trainer(tiny_settings(small_dataset, out, "training.early_stopping_patience=2"))
    args = prepared.trainer.args
    assert (args.eval_strategy, args.load_best_model_at_end) == ("no", False)
    assert not any(isinstance(c, EarlyStoppingCallback) for c in prepared.trainer.callback_handler.callbacks)
    assert (f"Note: no validation split in {small_dataset}: evaluation, load_best_model_at_end and early stopping "
            "off; the adapter saved is the last step's") in (out / "training_logs.txt").read_text().splitlines()


def test_overlong_count_reaches_the_run_log_and_summary(small_dataset, tmp_path):
    from ethsft.model.loading import load_tokenizer
    from ethsft.training.recipe import build_trainer

    out = tmp_path / "out"
    records = read_records(small_dataset / "train.jsonl")
    tok = load_tokenizer(tiny_settings(small_dataset, out))
    lengths = tokenize_split(records, tok, 10**6, "drop", None, "train")[1].lengths
    limit = sorted(lengths)[len(lengths) // 2]  # about half the samples are longer
    expected = tokenize_split(records, tok, limit, "drop", None, "train")[1]
    assert 0 < expected.overlong < len(records)
    prepared = build_trainer(tiny_settings(small_dataset, out, f"data.max_length={limit}", "data.overlong=drop"))
    assert f"Warning: {expected.message()}" in (out / "training_logs.txt").read_text().splitlines()
    assert {r.split: r.overlong for r in prepared.lengths}["train"] == expected.overlong  # -> run_summary.json
