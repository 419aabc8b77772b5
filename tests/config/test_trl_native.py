"""The config is TRL's own plus ethsft's section: every SFTConfig / LoraConfig / BitsAndBytesConfig field passes
through, a flat TRL recipe trains, TRL's names are read wherever they are written, and what TRL, peft or
transformers would refuse is refused before any model loads, in one line naming the key."""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner
from conftest import REPO

from ethsft.cli import cli
from ethsft.config.schema import ConfigError, load_settings


def dry_run(*args: str):
    return CliRunner().invoke(cli, ["train", "--config", "tiny_cpu", "--dry-run", *args])


@pytest.mark.parametrize("key, value, shown", [
    ("training.neftune_noise_alpha", "5", "neftune_noise_alpha: 5.0"),
    ("training.dataloader_num_workers", "2", "dataloader_num_workers: 2"),
    ("training.run_name", "nightly", "run_name: 'nightly'"),
    ("training.hub_strategy", "checkpoint", "hub_strategy: <HubStrategy.CHECKPOINT: 'checkpoint'>"),
    ("logging.logging_first_step", "true", "logging_first_step: True"),
])
def test_any_sftconfig_field_passes_through_and_shows_in_the_dry_run(key, value, shown):
    result = dry_run("--set", f"{key}={value}")
    assert result.exit_code == 0, result.output
    sft = result.output.split("# SFTConfig", 1)[1]
    assert f"\n  {shown}\n" in sft


def test_lora_and_bitsandbytes_fields_pass_through():
    result = dry_run("--set", "lora.init_lora_weights=gaussian", "--set", "quantization.llm_int8_skip_modules=[lm_head]")
    assert result.exit_code == 0, result.output
    assert "init_lora_weights='gaussian'" in result.output.split("# LoraConfig", 1)[1]
    assert '"llm_int8_skip_modules": [\n    "lm_head"\n  ]' in result.output.split("# BitsAndBytesConfig", 1)[1]


def test_trl_names_are_read_wherever_they_are_written():
    s = load_settings(sets=["training.report_to=tensorboard", "training.bf16=false", "training.max_length=512",
                            "lora.lora_r=8", "lora.lora_alpha=16", "model.load_in_4bit=false", "lora_dropout=0.1",
                            "model_name_or_path=embedded:tiny-mistral"])
    assert s.logging.report_to == "tensorboard" and s.optimization.bf16 is False and s.data.max_length == 512
    assert (s.lora.r, s.lora.alpha, s.lora.dropout) == (8, 16, 0.1)
    assert s.quantization.load_in_4bit is False and s.model.base_model == "embedded:tiny-mistral"
    assert s.training.extra == {}  # all of them are ethsft's own keys, not passed through twice


@pytest.mark.parametrize("setting, message", [
    ("training.learning_rat=1", "--set training.learning_rat: unknown key 'learning_rat' in section 'training' "
                                "(did you mean 'learning_rate'?)"),
    ("training.fast_path=true", "--set training.fast_path: unknown key 'fast_path' in section 'training' "
                                "(did you mean 'optimization.fast_path'?)"),
    ("logging.lora_r=8", "--set logging.lora_r: unknown key 'lora_r' in section 'logging' (did you mean 'lora.r'?)"),
    ("training.assistant_only_loss=true", "--set training.assistant_only_loss: training.assistant_only_loss: ethsft "
                                          "tokenizes every dataset format itself, with the loss on assistant turns "
                                          "and completions already; remove it"),
    ("training.warmup_steps=nan", "--set training.warmup_steps: training.warmup_steps must be a finite number, got "
                                  "'nan'"),
    ("learning_rate=inf", "--set learning_rate: training.learning_rate must be a finite number, got 'inf'"),
    ("use_peft=false", "--set use_peft: use_peft: false asks for full fine-tuning; ethsft trains LoRA adapters "
                       "(QLoRA by default): remove use_peft, or set quantization.load_in_4bit: false for bf16 LoRA"),
])
def test_bad_keys_and_values_fail_as_they_are_set(setting, message):
    with pytest.raises(ConfigError) as e:
        load_settings(sets=[setting])
    assert str(e.value) == message


@pytest.mark.parametrize("setting, message", [
    ("training.lr_scheduler_type=bogus", "Error: training.lr_scheduler_type: 'bogus' is not one of linear, cosine, "),
    ("optimization.optim=bogus", "Error: optimization.optim: 'bogus' is not one of adamw_torch, "),
    ("lora.task_type=bogus", "Error: lora.task_type: 'bogus' is not one of SEQ_CLS, "),
    ("logging.metric_for_best_model=eval_bogus", "Error: logging.metric_for_best_model=eval_bogus is not logged by "
                                                 "this run; choose one of eval_loss, eval_mean_token_accuracy, "),
    ("lora.target_modules=[q_proj,qkv]", "Error: lora.target_modules: qkv matches no module of embedded:tiny-mistral "
                                         "(its linear layers: down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, "
                                         "up_proj, v_proj)"),
    ("lora.modules_to_save=[score]", "Error: lora.modules_to_save: score matches no module of embedded:tiny-mistral"),
])
def test_what_the_libraries_would_refuse_is_refused_in_the_dry_run(setting, message):
    result = dry_run("--set", setting)
    assert result.exit_code == 2
    assert message in result.output, result.output
    assert "Traceback" not in result.output


def test_a_flat_trl_recipe_trains(small_dataset, tmp_path):
    """The file `trl sft --config` reads: no sections, TRL's ModelConfig / ScriptArguments / SFTConfig names."""
    recipe = tmp_path / "sft_qlora.yaml"
    recipe.write_text(f"""# Model arguments
model_name_or_path: embedded:tiny-mistral
dtype: float32
attn_implementation: sdpa
use_peft: true
lora_r: 8
lora_alpha: 16
lora_dropout: 0.0
lora_target_modules: all-linear
load_in_4bit: true
# Data training arguments
dataset_name: {small_dataset}
dataset_test_split: validation
max_length: 256
# SFT trainer arguments
output_dir: {tmp_path / "out"}
learning_rate: 1.0e-3
lr_scheduler_type: cosine
warmup_ratio: 0.1
max_steps: 2
per_device_train_batch_size: 4
gradient_accumulation_steps: 1
gradient_checkpointing: false
logging_steps: 1
eval_strategy: "no"
save_strategy: "no"
report_to: none
seed: 7
neftune_noise_alpha: 5
""", encoding="utf-8")
    result = CliRunner().invoke(cli, ["train", "--config", str(recipe)])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "run_summary.json").read_text())
    assert summary["global_step"] == 2
    settings = summary["settings"]
    assert settings["lora"]["r"] == 8 and settings["lora"]["target_modules"] == "all-linear"
    assert settings["training"]["neftune_noise_alpha"] == 5.0 and settings["training"]["warmup_steps"] == 0.1
    adapter = json.loads((tmp_path / "out" / "adapter_config.json").read_text())
    assert adapter["r"] == 8 and adapter["lora_alpha"] == 16


def test_a_config_written_back_reads_the_same(tmp_path):
    from ethsft.config.schema import dump_yaml

    s = load_settings(sets=["training.neftune_noise_alpha=5", "lora.init_lora_weights=gaussian", "lora.r=4"])
    (tmp_path / "c.yaml").write_text(dump_yaml(s), encoding="utf-8")
    again = load_settings(tmp_path / "c.yaml")
    assert again.to_dict() == s.to_dict()


def test_help_config_lists_every_key_with_its_help():
    result = CliRunner().invoke(cli, ["train", "--help-config"])
    assert result.exit_code == 0
    text = result.output
    assert "\n  top_layers [None]\n      Adapters on the last N decoder layers only" in text  # ethsft's own
    assert "\n  neftune_noise_alpha\n      If not None, activates NEFTune noise embeddings." in text  # TRL's help
    assert "\n  init_lora_weights\n" in text and "\n  llm_int8_skip_modules\n" in text  # peft's, bitsandbytes'
    assert "lora_r -> lora.r" in text


def test_a_shipped_preset_is_named_by_its_stem(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no configs/ here
    assert load_settings("tiny_cpu").model.base_model == load_settings(REPO / "configs" / "tiny_cpu.yaml").model.base_model
    with pytest.raises(ConfigError) as e:
        load_settings("tiny_gpu")
    assert str(e.value).startswith("config file not found: tiny_gpu (shipped: 8gb, 12gb (= training_config), 16gb, ")


def test_yaml_that_is_not_a_config_is_refused_in_one_line(tmp_path):
    cases = {
        "latin1.yaml": ("training:\n  output_dir: caf\xe9\n".encode("latin-1"),
                        "latin1.yaml:2: not valid UTF-8 (byte b'\\xe9'); save the config as UTF-8"),
        "twice.yaml": (b"training:\n  learning_rate: 1e-4\n  learning_rate: 2e-4\n",
                       "twice.yaml: line 3: key 'learning_rate' appears twice (first on line 2); keep one"),
        "bomb.yaml": (b"a: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                      b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                      b"e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]\nf: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                      b"g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]\nh: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
                      b"i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]\ntraining: {lora_r: *i}\n",
                      "bomb.yaml: its aliases expand to more than 100,000 values; a config is a few dozen keys"),
        "huge.yaml": (b"# " + b"x" * (1 << 20) + b"\n", "huge.yaml: 1,048,579 bytes is not a config (at most "
                                                        "1,048,576)"),
    }
    for name, (raw, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(raw)
        started = time.time()
        with pytest.raises(ConfigError) as e:
            load_settings(path)
        assert str(e.value) == f"{tmp_path}/{message}", name
        assert time.time() - started < 5, name


def test_a_deepspeed_file_that_is_missing_or_not_json_is_refused_before_loading(tmp_path):
    missing = CliRunner().invoke(cli, ["train", "--config", "tiny_cpu", "--deepspeed", str(tmp_path / "no.json")])
    assert missing.exit_code == 2 and "Error: DeepSpeed config not found: " in missing.output
    broken = tmp_path / "broken.json"
    broken.write_text("{zero_optimization: 2", encoding="utf-8")
    result = CliRunner().invoke(cli, ["train", "--config", "tiny_cpu", "--deepspeed", str(broken)])
    assert result.exit_code == 2
    assert f"Error: --deepspeed {broken}: not a readable DeepSpeed JSON (Expecting property name enclosed in double " \
           "quotes: line 1 column 2 (char 1))" in result.output


def test_the_configuration_page_holds_the_generated_key_reference():
    from ethsft.config.schema import reference_markdown

    page = (REPO / "docs" / "configuration.md").read_text(encoding="utf-8")
    generated = page.split("`tests/config/test_trl_native.py` keeps this page equal to it).\n\n", 1)[1]
    assert generated == reference_markdown(), "regenerate docs/configuration.md's key tables"
