"""`ethsft train` (ethsft/cli/train.py): end to end, --dry-run (secrets redacted), and the one-line errors a bad
config, dataset or model path gives."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from conftest import REPO


def test_negative_batch_size_fails_at_dry_run_naming_file_and_key(tmp_path):
    from ethsft.cli.train import main

    config = tmp_path / "bad.yaml"
    config.write_text("training:\n  per_device_train_batch_size: -1\n")
    result = CliRunner().invoke(main, ["--config", str(config), "--dry-run"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (f"Error: {config}: training.per_device_train_batch_size must be "
                                              "positive, got -1")
    result = CliRunner().invoke(main, ["--batch-size", "-1", "--dry-run"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == "Error: Invalid value for '--batch-size': -1 is not in the range x>=1."


def test_base_model_path_that_does_not_exist(small_dataset, tmp_path):
    from click.testing import CliRunner

    from ethsft.cli.train import main

    missing = tmp_path / "no-such-model"
    result = CliRunner().invoke(main, ["--config", str(REPO / "configs" / "tiny_cpu.yaml"), "--dataset",
                                       str(small_dataset), "--output", str(tmp_path / "out"), "--base-model",
                                       str(missing)])
    assert result.exit_code == 1
    assert f"Error: model.base_model: local path does not exist: {missing}" in result.output


def test_malformed_dataset_fails_the_cli_with_file_and_line(small_dataset, tmp_path):
    from click.testing import CliRunner

    from ethsft.cli.train import main

    bad = small_dataset / "validation.jsonl"
    bad.write_text(bad.read_text() + "not json\n", encoding="utf-8")
    result = CliRunner().invoke(main, ["--config", str(REPO / "configs" / "tiny_cpu.yaml"), "--dataset",
                                       str(small_dataset), "--output", str(tmp_path / "out")])
    assert result.exit_code == 1
    assert (f"Error: {bad}:9: malformed JSON (Expecting value at column 1); expected one object per line with "
            "the keys of instruction/input/output, prompt/completion, messages or text") in result.output


def test_remote_code_off_weights_from_safetensors_and_secrets_redacted_in_dry_run(tmp_path, monkeypatch):
    from click.testing import CliRunner
    from transformers import AutoModelForCausalLM

    from ethsft.config.schema import Settings, load_settings
    from ethsft.model.loading import load_model
    from ethsft.cli.train import main

    assert Settings().model.trust_remote_code is False
    seen = {}

    def capture(source, **kwargs):
        seen.update(kwargs)
        raise RuntimeError("stop here")

    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", capture)
    with pytest.raises(RuntimeError, match="stop here"):
        load_model(load_settings(REPO / "configs" / "tiny_cpu.yaml"))
    assert seen["trust_remote_code"] is False and seen["use_safetensors"] is True

    token, key = "hf_" + "Ab1" * 12, "wandb-secret-value-123"
    monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setenv("WANDB_API_KEY", key)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = CliRunner().invoke(main, ["--config", str(REPO / "configs" / "tiny_cpu.yaml"), "--dry-run",
                                       "--output", f"runs/{key}"])
    assert result.exit_code == 0, result.output
    assert token not in result.output and key not in result.output
    assert "HF_TOKEN: <redacted>" in result.output and "WANDB_API_KEY: <redacted>" in result.output
    assert "HF_HUB_OFFLINE: '1'" in result.output


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
