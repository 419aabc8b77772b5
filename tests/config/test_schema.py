"""The config schema: every shipped file validates, the guide's file loads, bad configs fail exactly."""

from __future__ import annotations

from pathlib import Path

import pytest

from ethsft.config.schema import ConfigError, load_settings
from ethsft.config.hf import bnb_config, describe, lora_config, sft_config

REPO = Path(__file__).resolve().parents[2]
CONFIGS = sorted((REPO / "configs").glob("*.yaml"))
GUIDE = REPO / "tests" / "fixtures" / "guide_training_config.yaml"


def test_the_presets_exist():
    assert {p.stem for p in CONFIGS} >= {"training_config", "8gb", "16gb", "24gb", "80gb", "tiny_cpu", "demo_cpu"}


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_every_config_validates_and_builds(path):
    first = path.read_text().splitlines()[0]
    assert first.startswith("# ") and "ethsft train --config configs/" + path.name in path.read_text()
    s = load_settings(path)
    assert sft_config(s).max_length == s.data.max_length
    assert lora_config(s).r == s.lora.r
    assert (bnb_config(s) is not None) == s.quantization.load_in_4bit  # bf16 LoRA presets build none


def test_guide_config_as_printed_loads_with_one_line_notices(capsys):
    s = load_settings(GUIDE)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"ethsft: {GUIDE}: training.warmup_ratio is now training.warmup_steps (transformers 5 removed it; "
        "a float < 1 in warmup_steps is a ratio); using it as training.warmup_steps",
        f"ethsft: {GUIDE}: data.max_seq_length is now data.max_length (TRL 1.x renamed it); using it as data.max_length",
        f"ethsft: {GUIDE}: logging.evaluation_strategy is now logging.eval_strategy (transformers 5 renamed it); "
        "using it as logging.eval_strategy",
    ]
    cfg = sft_config(s)
    assert (cfg.warmup_steps, cfg.max_length, cfg.eval_strategy.value) == (0.03, 2048, "steps")
    assert (cfg.learning_rate, cfg.gradient_accumulation_steps, cfg.max_grad_norm) == (2e-4, 16, 0.3)
    assert lora_config(s).target_modules == {"q_proj", "v_proj"}


def _write(tmp_path, text):
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_unknown_key_names_key_section_and_closest(tmp_path):
    p = _write(tmp_path, "training:\n  learning_rat: 1.0e-4\n")
    with pytest.raises(ConfigError) as e:
        load_settings(p)
    assert str(e.value) == f"{p}: unknown key 'learning_rat' in section 'training' (did you mean 'learning_rate'?)"


def test_unknown_section(tmp_path):
    p = _write(tmp_path, "optimisation:\n  optim: adamw_torch\n")
    with pytest.raises(ConfigError) as e:
        load_settings(p)
    assert str(e.value).startswith(f"{p}: unknown section 'optimisation' (did you mean 'optimization'?)")


def test_wrong_type_and_choice(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_settings(_write(tmp_path, "lora:\n  r: sixteen\n"))
    assert str(e.value).endswith("lora.r must be int, got 'sixteen'")
    with pytest.raises(ConfigError) as e:
        load_settings(sets=["quantization.bnb_4bit_quant_type=nf3"])
    assert str(e.value) == "--set quantization.bnb_4bit_quant_type: quantization.bnb_4bit_quant_type must be one of fp4, nf4; got 'nf3'"


def test_precedence_defaults_yaml_flags_set(tmp_path):
    p = _write(tmp_path, "training:\n  learning_rate: 1.0e-4\n  num_train_epochs: 5\nlora:\n  r: 8\n")
    s = load_settings(p, {"training.learning_rate": 3e-4}, ["lora.r=64", "lora.target_modules=all-linear"])
    assert s.training.learning_rate == 3e-4       # flag beats YAML
    assert s.training.num_train_epochs == 5       # YAML beats default
    assert s.lora.r == 64 and s.lora.target_modules == "all-linear"  # --set beats YAML
    assert s.lora.alpha == 32                     # default


def test_set_reads_a_list_for_a_key_that_also_takes_a_string():
    """lora.target_modules takes a list or a pattern string: --set '[..]' must give the list, not the string
    '[q_proj,...]' (peft would read that as a regular expression and adapt nothing)."""
    s = load_settings(sets=['lora.target_modules=["q_proj","k_proj","v_proj","o_proj"]'])
    assert s.lora.target_modules == ["q_proj", "k_proj", "v_proj", "o_proj"]
    assert load_settings(sets=["lora.target_modules=[q_proj, o_proj]"]).lora.target_modules == ["q_proj", "o_proj"]
    assert load_settings(sets=["lora.target_modules=all-linear"]).lora.target_modules == "all-linear"
    with pytest.raises(ConfigError) as e:
        load_settings(sets=["lora.target_modules=[q_proj, [v_proj"])
    assert str(e.value).startswith("--set lora.target_modules: lora.target_modules: cannot read '[q_proj, [v_proj' (")
    with pytest.raises(ConfigError) as e:
        load_settings(sets=["lora.target_modules=[q_proj, 3]"])
    assert str(e.value) == "--set lora.target_modules: lora.target_modules must be list or str, got ['q_proj', 3]"


def test_bad_set_syntax():
    with pytest.raises(ConfigError) as e:
        load_settings(sets=["lora.r"])
    assert str(e.value) == "--set 'lora.r': expected section.key=value, e.g. --set lora.r=32"


def test_dry_run_prints_all_three_objects_without_loading(capsys):
    from click.testing import CliRunner

    from ethsft.cli import cli

    result = CliRunner().invoke(cli, ["train", "--config", str(GUIDE), "--dry-run", "--learning-rate", "7e-5",
                                      "--set", "lora.use_dora=true"])
    assert result.exit_code == 0, result.output
    assert "# BitsAndBytesConfig" in result.output and "# LoraConfig" in result.output
    assert "  learning_rate: 7e-05" in result.output and "use_dora=True" in result.output
    assert "max_length: 2048" in result.output


def test_cli_reports_config_errors_without_traceback():
    from click.testing import CliRunner

    from ethsft.cli import cli

    result = CliRunner().invoke(cli, ["train", "--set", "lora.rank=8", "--dry-run"])
    assert result.exit_code == 2
    assert "Error: --set lora.rank: unknown key 'rank' in section 'lora' (did you mean 'r'?)" in result.output


def test_fast_path_keys():
    from ethsft.config.hf import fitted_checkpointing, liger_on, sft_config

    s = load_settings(sets=["optimization.use_liger_kernel=auto", "optimization.fast_path=true",
                            "optimization.vram_budget_gib=11"])
    assert s.optimization.use_liger_kernel == "auto" and s.optimization.vram_budget_gib == 11.0
    # no GPU here: Liger's auto is off and checkpointing stays as configured (nothing to measure a budget on)
    assert liger_on(s) is False and fitted_checkpointing(s) is False
    assert sft_config(s).gradient_checkpointing is True
    with pytest.raises(ConfigError) as e:
        load_settings(sets=["optimization.use_liger_kernel=sometimes"])
    assert str(e.value) == "optimization.use_liger_kernel must be true, false or auto, got 'sometimes'"
    with pytest.raises(ConfigError) as e:
        load_settings(sets=["optimization.vram_budget_gib=0"])
    assert str(e.value) == ("--set optimization.vram_budget_gib: optimization.vram_budget_gib must be positive, "
                            "got 0.0")


def test_top_layers_places_adapters_on_the_last_layers_only():
    from ethsft.config.schema import ConfigError, load_settings
    from ethsft.config.hf import lora_config

    demo = load_settings(REPO / "configs" / "demo_cpu.yaml")
    assert demo.lora.top_layers == 10
    assert lora_config(demo, num_layers=30).layers_to_transform == list(range(20, 30))
    assert lora_config(load_settings()).layers_to_transform is None
    with pytest.raises(ConfigError) as err:
        load_settings(None, sets=["lora.top_layers=4", "lora.target_modules=all-linear"])
    assert str(err.value) == ("lora.top_layers needs lora.target_modules as a list of module names, not "
                              "'all-linear' (peft cannot restrict a pattern to some layers); e.g. "
                              "[q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]")
    with pytest.raises(ConfigError, match="lora.top_layers must be positive, got 0"):
        load_settings(None, sets=["lora.top_layers=0"])


def test_cpu_bf16_trains_under_autocast_only_where_the_cpu_has_bf16(monkeypatch):
    import torch

    from ethsft.config import hf as hf_args
    from ethsft.config.schema import load_settings

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    s = load_settings(None, sets=["optimization.cpu_bf16=true"])
    def chosen(settings):
        p = hf_args.resolve_precision(settings)
        return p.bf16, p.fp16, p.compute_dtype

    monkeypatch.setattr(hf_args, "cpu_has_bf16", lambda: True)
    assert chosen(s) == (True, False, torch.bfloat16)
    assert chosen(load_settings())[:2] == (False, False)  # off unless asked for
    monkeypatch.setattr(hf_args, "cpu_has_bf16", lambda: False)
    assert chosen(s)[:2] == (False, False)


@pytest.mark.parametrize("item, message", [
    ("training.gradient_accumulation_steps=0", "training.gradient_accumulation_steps must be positive, got 0"),
    ("training.per_device_eval_batch_size=0", "training.per_device_eval_batch_size must be positive, got 0"),
    ("data.max_length=-5", "data.max_length must be positive, got -5"),
    ("lora.r=0", "lora.r must be positive, got 0"),
    ("lora.alpha=-16", "lora.alpha must be positive, got -16"),
    ("lora.dropout=1.5", "lora.dropout must be >= 0 and < 1, got 1.5"),
    ("training.learning_rate=0", "training.learning_rate must be positive, got 0.0"),
    ("training.num_train_epochs=-1", "training.num_train_epochs must be positive, got -1.0"),
    ("training.max_steps=0", "training.max_steps must be -1 (train for num_train_epochs) or positive, got 0"),
    ("logging.eval_steps=0", "logging.eval_steps must be positive, got 0"),
    ("logging.eval_accuracy_samples=-1", "logging.eval_accuracy_samples must be >= 0, got -1"),
])
def test_out_of_range_numbers_name_the_key(item, message):
    with pytest.raises(ConfigError) as e:
        load_settings(None, None, [item])
    assert str(e.value) == f"--set {item.split('=')[0]}: {message}"
