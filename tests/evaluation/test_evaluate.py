"""Generation, evaluation, inference, merging and training-time intent metrics on the tiny model (CPU)."""

from __future__ import annotations

import json
import random
import re
import shutil
from pathlib import Path

import pytest
import torch

from conftest import INSTRUCTION, make_record, random_lora_adapter, tiny_settings


@pytest.fixture(scope="session")
def base(tiny_model_path):
    from ethsft.inference.loading import load_for_inference

    return load_for_inference("embedded:tiny-mistral")


@pytest.fixture(scope="session")
def adapter_dir(tiny_model_path, tmp_path_factory):
    return random_lora_adapter(tiny_model_path, tmp_path_factory.mktemp("adapter"))


def records(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [make_record(rng) for _ in range(n)]


def greedy(loaded, recs, batch_size=8, max_new_tokens=12):
    from ethsft.evaluation.generation import generate_texts
    from ethsft.data.formatting import prompt_messages

    return generate_texts(loaded.model, loaded.tokenizer, [prompt_messages(r) for r in recs], max_new_tokens,
                          batch_size)


def test_batched_generation_matches_one_at_a_time(base):
    from ethsft.evaluation.generation import generate_ids, prompt_ids
    from ethsft.data.formatting import prompt_messages

    recs = records(6)
    prompts = [prompt_ids(base.tokenizer, prompt_messages(r)) for r in recs]
    assert len({len(p) for p in prompts}) > 1  # the batch really is left-padded
    batched = generate_ids(base.model, base.tokenizer, prompts, 10, batch_size=4)
    single = [generate_ids(base.model, base.tokenizer, [p], 10, batch_size=1)[0] for p in prompts]
    assert batched == single


def test_scoring_ends_an_answer_once_it_cannot_be_json(base):
    """json_only: a row stops at its first non-blank token unless that opens a JSON object; the parsed result
    (what scoring uses) is the same as with the full budget."""
    from ethsft.evaluation.generation import JsonAnswerStop, generate_texts
    from ethsft.evaluation.metrics import parse_intent
    from ethsft.data.formatting import prompt_messages

    tok = base.tokenizer
    brace, word, blank = (tok.convert_tokens_to_ids(t) for t in ("{", "▁The", "▁"))
    crit = JsonAnswerStop(tok, 1)
    assert crit(torch.tensor([[1, brace], [1, word], [1, blank]]), None).tolist() == [False, True, False]
    assert crit(torch.tensor([[1, brace, word], [1, word, brace], [1, blank, brace]]), None).tolist() == [
        False, True, False]  # decided once: a "{" answer is never cut, a prose one never resumes
    recs = records(4)
    messages = [prompt_messages(r) for r in recs]
    full = generate_texts(base.model, tok, messages, 12, 4)
    short = generate_texts(base.model, tok, messages, 12, 4, json_only=True)
    for f, s in zip(full, short):
        assert f.startswith(s) and parse_intent(f) == parse_intent(s)
        assert s.startswith("{") or len(tok(s, add_special_tokens=False).input_ids) <= 2
    assert sum(map(len, short)) < sum(map(len, full))  # the random model's prose was cut


class OracleModel(torch.nn.Module):
    """Answers each prompt with a fixed text + EOS, through the real left-padded generate_ids path."""

    def __init__(self, tokenizer, answers: dict[tuple, str]):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.eos = tokenizer.eos_token_id
        self.answers = {k: tokenizer(v, add_special_tokens=False)["input_ids"] + [self.eos] for k, v in answers.items()}

    def generate(self, input_ids, attention_mask, max_new_tokens, pad_token_id, **_):
        rows = [self.answers[tuple(ids[m.bool()].tolist())][:max_new_tokens] for ids, m in zip(input_ids, attention_mask)]
        width = max(len(r) for r in rows)
        new = torch.tensor([r + [pad_token_id] * (width - len(r)) for r in rows])
        return torch.cat([input_ids, new], dim=1)


def test_evaluate_records_scores_known_answers(base):
    from ethsft.evaluation.evaluate import evaluate_records
    from ethsft.evaluation.generation import prompt_ids
    from ethsft.data.formatting import prompt_messages

    recs = records(4)
    answers = [r["output"] for r in recs]
    out0 = json.loads(answers[0])
    answers[0] = json.dumps({**out0, "action": "approve" if out0["action"] != "approve" else "swap"})  # wrong action
    answers[1] = answers[1][:-1]  # truncated: invalid JSON
    oracle = OracleModel(base.tokenizer, {tuple(prompt_ids(base.tokenizer, prompt_messages(r))): a
                                          for r, a in zip(recs, answers)})
    metrics, rows = evaluate_records(oracle, base.tokenizer, recs, batch_size=3)
    assert metrics["valid_json_rate"] == 0.75 and metrics["exact_match"] == 0.5
    assert metrics["fields"]["action"]["accuracy"] == 0.5 and metrics["fields"]["status"]["accuracy"] == 0.75
    assert [r["prediction"] for r in rows] == answers  # in input order, EOS and padding cut off
    assert rows[0]["fields"] == {"action": False, "status": True} and not rows[1]["valid_json"]


def test_evaluate_model_on_untrained_base_writes_results(small_dataset, tmp_path, tiny_model_path):
    from ethsft.evaluation.evaluate import evaluate_model
    from ethsft.filenames import METRICS_FILE, PREDICTIONS_FILE

    out = tmp_path / "eval"
    metrics = evaluate_model("embedded:tiny-mistral", small_dataset / "test.jsonl", batch_size=4, output_dir=out,
                             progress=False)
    rows = [json.loads(line) for line in (out / PREDICTIONS_FILE).read_text().splitlines()]
    assert json.loads((out / METRICS_FILE).read_text()) == json.loads(json.dumps(metrics))
    assert len(rows) == metrics["samples"] == 4 and metrics["adapter"] is None
    assert set(rows[0]) == {"input", "reference", "prediction", "valid_json", "exact_match", "fields", "extra_fields"}
    assert metrics["exact_match"] == sum(r["exact_match"] for r in rows) / 4 == 0.0  # random weights: the baseline
    assert metrics["max_new_tokens"] >= 16 and metrics["samples_per_second"] > 0


def test_merged_model_gives_the_same_greedy_output_as_base_plus_adapter(adapter_dir, base, tmp_path):
    from ethsft.inference.loading import load_for_inference
    from ethsft.inference.merge import merge_adapter

    recs = records(6, seed=3)
    with_adapter = load_for_inference(adapter_dir)
    assert with_adapter.adapter == str(adapter_dir)
    expected = greedy(with_adapter, recs)
    assert expected != greedy(base, recs)  # the adapter matters

    out = merge_adapter(adapter_dir, tmp_path / "merged", dtype="float32")
    assert (out / "config.json").is_file() and (out / "tokenizer.json").is_file()
    assert not (out / "adapter_config.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["merged"]  # no temp folder left behind
    merged = load_for_inference(out)
    assert merged.adapter is None and type(merged.model).__name__ == "MistralForCausalLM"
    assert greedy(merged, recs) == expected

    with pytest.raises(ValueError, match="already exists; pass --overwrite"):
        merge_adapter(adapter_dir, out, dtype="float32")


def test_adapter_and_base_mismatch_name_both(adapter_dir, tmp_path, tiny_model_path):
    from transformers import AutoModelForCausalLM, MistralConfig

    from ethsft.inference.loading import ModelLoadError, load_for_inference

    other = tmp_path / "other-base"
    config = MistralConfig(vocab_size=32000, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=4, num_key_value_heads=2)
    AutoModelForCausalLM.from_config(config).save_pretrained(other)
    shutil.copy(Path(tiny_model_path) / "tokenizer.json", other)
    shutil.copy(Path(tiny_model_path) / "tokenizer_config.json", other)

    with pytest.raises(ModelLoadError) as e:  # named a different base
        load_for_inference(adapter_dir, base_model=str(other))
    assert f"trained on base model {tiny_model_path}" in str(e.value) and str(other) in str(e.value)

    moved = tmp_path / "adapter"  # an adapter whose recorded base has other shapes
    shutil.copytree(adapter_dir, moved)
    cfg = json.loads((moved / "adapter_config.json").read_text())
    (moved / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": str(other)}))
    with pytest.raises(ModelLoadError) as e:
        load_for_inference(moved)
    assert f"does not fit base model {other}" in str(e.value)
    assert re.search(r"model\.layers\.0\.\w+\.\w+_proj has (input|output) size \d+ in the base, \d+ in the adapter",
                     str(e.value))


def test_missing_embedded_cache_path_is_rebuilt_here(tiny_model_path):
    from ethsft.inference.loading import ModelLoadError, _locate

    assert _locate("/gone/elsewhere/models/tiny-mistral", "base") == tiny_model_path
    with pytest.raises(ModelLoadError, match="model not found: /gone/models/x"):
        _locate("/gone/models/x", "model")
    assert _locate("mistralai/Mistral-7B-Instruct-v0.2", "base") == "mistralai/Mistral-7B-Instruct-v0.2"


def test_as_record_accepts_every_input_form(tmp_path):
    from ethsft.inference.loading import INSTRUCTION as INFER_INSTRUCTION
    from ethsft.inference.loading import as_record, read_inputs

    assert INFER_INSTRUCTION == INSTRUCTION
    tx = {"from": "0x" + "1" * 40, "to": "0x" + "2" * 40, "function": "transfer"}
    compact = json.dumps(tx, separators=(",", ":"))
    assert as_record(json.dumps(tx, indent=2)) == {"instruction": INSTRUCTION, "input": compact}
    assert as_record(tx)["input"] == compact
    prepared = {"instruction": INSTRUCTION, "input": compact, "output": "{}"}
    assert as_record(json.dumps(prepared)) == prepared
    assert as_record("not json") == {"instruction": INSTRUCTION, "input": "not json"}
    (tmp_path / "in.jsonl").write_text(json.dumps(prepared) + "\n\n" + compact + "\n")
    assert [r["input"] for r in read_inputs(tmp_path / "in.jsonl")] == [compact, compact]


def test_decoded_csv_rows_become_the_prepared_input(tmp_path):
    pytest.importorskip("ethsft.eth.tx")
    from ethsft.eth.prepare import prepare
    from ethsft.eth.synth import generate_rows, write_rows

    from ethsft.inference.loading import read_inputs

    csv_path = tmp_path / "decoded.csv"
    write_rows(csv_path, generate_rows(6, seed=2))
    prepare(csv_path, tmp_path / "ds", split=(1.0, 0.0, 0.0), progress=False, count_tokens=False)
    prepared = [json.loads(line)["input"] for line in (tmp_path / "ds" / "train.jsonl").read_text().splitlines()]
    assert sorted(r["input"] for r in read_inputs(csv_path)) == sorted(prepared)


def test_cli_evaluate_infer_merge(adapter_dir, small_dataset, tmp_path):
    from click.testing import CliRunner

    from ethsft.cli.evaluate import evaluate, infer, merge

    runner = CliRunner()
    result = runner.invoke(evaluate, ["--model", str(adapter_dir), "--dataset", str(small_dataset), "--limit", "2",
                                      "--batch-size", "2", "--output", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    assert "Exact match:" in result.output and "Confusion of 'action'" in result.output
    assert json.loads((tmp_path / "ev" / "metrics.json").read_text())["samples"] == 2

    tx = json.dumps({"from": "0x" + "1" * 40, "to": "0x" + "2" * 40, "function": "transfer"})
    result = runner.invoke(infer, ["--model", str(adapter_dir), tx, "--max-new-tokens", "8"])
    assert result.exit_code == 0, result.output
    line = json.loads(result.stdout.strip().splitlines()[-1])
    assert set(line) == {"input", "intent", "raw"} and line["input"] == json.dumps(json.loads(tx), separators=(",", ":"))

    result = runner.invoke(infer, ["--model", str(adapter_dir), "--base-model", "embedded:tiny-mistral", tx,
                                   "--max-new-tokens", "4"])
    assert result.exit_code == 0, result.output  # the same base under its embedded name is accepted
    assert runner.invoke(infer, ["--model", str(adapter_dir)]).exit_code == 2  # nothing to infer

    out = tmp_path / "merged"
    assert runner.invoke(merge, ["--adapter", str(adapter_dir), "--output", str(out)]).exit_code == 0
    again = runner.invoke(merge, ["--adapter", str(adapter_dir), "--output", str(out)])
    assert again.exit_code == 1 and "pass --overwrite" in again.output
    assert runner.invoke(merge, ["--adapter", str(adapter_dir), "--output", str(out), "--overwrite"]).exit_code == 0
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"


def test_training_logs_intent_metrics_and_keeps_the_best_by_them(small_dataset, tmp_path):
    """build_trainer's one trainer class logs intent metrics beside eval_loss; metric_for_best_model names one."""
    from ethsft.training.recipe import build_trainer
    from ethsft.training.trainer import IntentSFTTrainer

    out = tmp_path / "run"
    s = tiny_settings(small_dataset, out, "training.max_steps=4", "logging.eval_accuracy_samples=3",
                      "logging.metric_for_best_model=eval_intent_field_accuracy")
    prepared = build_trainer(s)
    trainer = prepared.trainer
    assert type(trainer) is IntentSFTTrainer
    evaluator = trainer.intent_evaluator
    trainer.train()
    evals = [h for h in trainer.state.log_history if "eval_loss" in h]
    assert len(evals) == 2
    for h in evals:  # in the same log entry as eval_loss: console, training_logs.txt, trackers all get them
        assert {"eval_intent_valid_json", "eval_intent_exact_match", "eval_intent_field_accuracy",
                "eval_intent_action_accuracy"} <= set(h)
    assert trainer.state.best_metric == max(h["eval_intent_field_accuracy"] for h in evals)
    assert trainer.state.best_model_checkpoint is not None
    assert len(evaluator.records) == 3 and evaluator.last_metrics["samples"] == 3
    assert "Intent Exact Match:" in (out / "training_logs.txt").read_text()
