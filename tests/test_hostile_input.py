"""Hostile input: every case fails (or is reported) with a message naming the file, row or key and what was
expected. The messages are asserted word for word: they are the user interface of a failed run."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from conftest import INSTRUCTION, REPO, tiny_settings, write_split
from ethsft.config.schema import ConfigError, load_settings
from ethsft.data.records import DataError, read_records, tokenize_split

GOOD = {"instruction": INSTRUCTION, "input": '{"function":"transfer"}', "output": '{"action":"transfer"}'}


def jsonl(path: Path, *lines: str | bytes) -> Path:
    path.write_bytes(b"".join((line if isinstance(line, bytes) else line.encode()) + b"\n" for line in lines))
    return path


def test_malformed_jsonl_line_names_file_and_line(tmp_path):
    path = jsonl(tmp_path / "train.jsonl", json.dumps(GOOD), '{"instruction": "x", "input": ')
    with pytest.raises(DataError) as e:
        read_records(path)
    assert str(e.value) == (f"{path}:2: malformed JSON (Expecting value at column 31); expected one object per line "
                            "with the keys of instruction/input/output, prompt/completion, messages or text")


def test_record_missing_output_names_the_key(tmp_path):
    path = jsonl(tmp_path / "train.jsonl", json.dumps(GOOD), json.dumps(GOOD),
                 json.dumps({"instruction": INSTRUCTION, "input": "{}"}))
    with pytest.raises(DataError) as e:
        read_records(path)
    assert str(e.value) == f"{path}:3: record is missing 'output' (expected keys: instruction, input, output)"


def test_wrong_types_and_non_objects_are_named(tmp_path):
    path = jsonl(tmp_path / "a.jsonl", json.dumps({**GOOD, "output": {"action": "swap"}}))
    with pytest.raises(DataError) as e:
        read_records(path)
    assert str(e.value) == f"{path}:1: 'output' must be a string, got dict"
    path = jsonl(tmp_path / "b.jsonl", "[1, 2]")
    with pytest.raises(DataError) as e:
        read_records(path)
    assert str(e.value) == (f"{path}:1: expected a JSON object with the keys of instruction/input/output, "
                            "prompt/completion, messages or text; got list")


def test_empty_split_file(tmp_path):
    path = jsonl(tmp_path / "validation.jsonl", "", "   ")
    with pytest.raises(DataError) as e:
        read_records(path)
    assert str(e.value) == (f"{path}: empty split file; expected JSONL records with the keys of "
                            "instruction/input/output, prompt/completion, messages or text")


def test_non_utf8_bytes_name_line_and_byte(tmp_path):
    path = jsonl(tmp_path / "train.jsonl", json.dumps(GOOD), b'{"instruction": "caf\xe9"}')
    with pytest.raises(DataError) as e:
        read_records(path)
    assert str(e.value) == (f"{path}:2: not valid UTF-8 (column 21: byte b'\\xe9'); re-encode the file as UTF-8")


def test_overlong_samples_are_counted_and_truncated_or_dropped_never_silently(tokenizer):
    long = {**GOOD, "input": "0x" + "ab" * 400}
    records = [GOOD, long, GOOD, long]
    ds, report = tokenize_split(records, tokenizer, 64, "truncate", None, "train")
    assert len(ds) == 4 and max(len(ids) for ids in ds["input_ids"]) == 64
    assert (report.overlong, report.total) == (2, 4)
    assert report.message() == (f"train: 2 of 4 samples longer than 64 tokens had their prompt cut in the middle to "
                                f"keep the answer whole; longest {report.longest}. Set data.max_length or "
                                "data.overlong to change this.")
    ds, report = tokenize_split(records, tokenizer, 64, "drop", None, "validation")
    assert len(ds) == 2
    assert report.message() == (f"validation: 2 of 4 samples dropped (longer than 64 tokens); longest "
                                f"{report.longest}. Set data.max_length or data.overlong to change this.")
    with pytest.raises(DataError) as e:
        tokenize_split([long], tokenizer, 64, "drop", None, "train")
    assert str(e.value) == ("train: all 1 samples are longer than data.max_length=64 and data.overlong is 'drop'; "
                            "nothing is left to train on")


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


def _no_template_tokenizer(tiny_model_path: str, target: Path) -> Path:
    target.mkdir()
    shutil.copy(Path(tiny_model_path) / "tokenizer.json", target)
    config = json.loads((Path(tiny_model_path) / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (target / "tokenizer_config.json").write_text(json.dumps(config))
    return target


def test_tokenizer_without_chat_template(tiny_model_path, tmp_path, capsys):
    from ethsft.model.loading import load_tokenizer

    source = str(_no_template_tokenizer(tiny_model_path, tmp_path / "tok"))
    with pytest.raises(ConfigError) as e:  # none: the tokenizer's own template or nothing
        load_tokenizer(load_settings(None, None, ["model.chat_template=none"]), source)
    assert str(e.value) == (f"the tokenizer of {source} has no chat template and model.chat_template is 'none': set "
                            "model.chat_template to 'mistral' (ethsft's packaged Mistral-Instruct template), 'auto', "
                            "or the path of a .jinja template file")

    capsys.readouterr()
    tok = load_tokenizer(load_settings(), source)  # auto: the packaged template, with a notice
    assert capsys.readouterr().err == (f"ethsft: {source} has no chat template: using ethsft's packaged "
                                       "Mistral-Instruct template\n")
    assert "[INST]" in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)

    with pytest.raises(ConfigError) as e:
        load_tokenizer(load_settings(None, None, ["model.chat_template=templates/missing.jinja"]), source)
    assert str(e.value) == "model.chat_template: file not found: templates/missing.jinja"


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


@pytest.fixture(scope="module")
def foreign_adapter(tmp_path_factory):
    """A LoRA adapter trained on another base (hidden size 32; the tiny model has 64)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, MistralConfig

    root = tmp_path_factory.mktemp("foreign")
    other = root / "other-base"
    config = MistralConfig(vocab_size=32000, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(other)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(other),
                                LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    peft_model.save_pretrained(root / "adapter")
    return root / "adapter", other


def test_adapter_from_another_base_at_evaluate_and_merge_time(foreign_adapter, tiny_model_path, tmp_path):
    from ethsft.inference.loading import ModelLoadError, load_for_inference
    from ethsft.inference.merge import merge_adapter

    adapter, other = foreign_adapter
    named = (f"adapter {adapter} was trained on base model {other}, but --base-model is {tiny_model_path}; leave "
             "--base-model out to use the adapter's own base, or pass the same model")
    with pytest.raises(ModelLoadError) as e:
        load_for_inference(adapter, base_model=tiny_model_path)
    assert str(e.value) == named
    with pytest.raises(ModelLoadError) as e:
        merge_adapter(adapter, tmp_path / "merged", base_model=tiny_model_path)
    assert str(e.value) == named

    relabelled = tmp_path / "relabelled"  # its config claims the tiny base: the shapes still give it away
    shutil.copytree(adapter, relabelled)
    cfg = json.loads((relabelled / "adapter_config.json").read_text())
    (relabelled / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": tiny_model_path}))
    misfit = (f"adapter {relabelled} (trained on {tiny_model_path}) does not fit base model {tiny_model_path}: "
              "model.layers.0.self_attn.q_proj has input size 64 in the base, 32 in the adapter "
              "(base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight [8, 32])")
    with pytest.raises(ModelLoadError) as e:
        load_for_inference(relabelled)
    assert str(e.value) == misfit
    with pytest.raises(ModelLoadError) as e:
        merge_adapter(relabelled, tmp_path / "merged2")
    assert str(e.value) == misfit
    assert not (tmp_path / "merged2").exists()
