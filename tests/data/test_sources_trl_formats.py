"""TRL's dataset formats train through ethsft's own path (``ethsft train --dataset``), from each kind of source:
``messages`` from a JSONL folder, conversational prompt/completion from a save_to_disk folder, plain
prompt/completion from a Hub-style repo of parquet files, ``text`` through the CLI. Each trains a few steps on the
tiny model, and the labels are exactly the completion / assistant tokens."""

from __future__ import annotations

import json
import random

import torch

from conftest import make_record, tiny_settings, write_split
from ethsft.data.formatting import render, to_prompt_completion


def _records(n: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [make_record(rng) for _ in range(n)]


def _conversation(record: dict) -> dict:
    """Two assistant turns after a system message: the intent, then its action alone."""
    return {"messages": [
        {"role": "system", "content": "Answer with JSON only."},
        {"role": "user", "content": f"{record['instruction']}\n\n{record['input']}"},
        {"role": "assistant", "content": record["output"]},
        {"role": "user", "content": "Its action, in one word?"},
        {"role": "assistant", "content": json.loads(record["output"])["action"]}]}


def _trained_spans(ids: list[int], labels: list[int]) -> list[list[int]]:
    """The runs of tokens the loss falls on, in order."""
    spans: list[list[int]] = []
    for i, (token, label) in enumerate(zip(ids, labels)):
        if label != -100 and i and labels[i - 1] != -100:
            spans[-1].append(token)
        elif label != -100:
            spans.append([token])
    return spans


def _train_and_check_learning(trainer) -> None:
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if "lora_B" in n}
    trainer.train()
    after = dict(trainer.model.named_parameters())
    assert trainer.state.global_step == 2
    assert all(not torch.equal(b, after[n].detach()) for n, b in before.items())  # every adapter learned


def test_messages_from_jsonl_train_on_every_assistant_turn_only(tmp_path, tokenizer):
    from ethsft.training.recipe import build_trainer

    root = tmp_path / "chats"
    root.mkdir()
    train, validation = [_conversation(r) for r in _records(8, 0)], [_conversation(r) for r in _records(4, 1)]
    write_split(root / "train.jsonl", train)
    write_split(root / "validation.jsonl", validation)
    prepared = build_trainer(tiny_settings(root, tmp_path / "out", "training.max_steps=2"))
    rows = prepared.trainer.train_dataset
    assert len(rows) == 8 and len(prepared.trainer.eval_dataset) == 4
    for row, source in zip(rows, train):
        answers = [m["content"] for m in source["messages"] if m["role"] == "assistant"]
        assert [tokenizer.decode(s) for s in _trained_spans(row["input_ids"], row["labels"])] == \
            [a + "</s>" for a in answers]
        assert row["labels"] == render(source, tokenizer).labels
    log = (tmp_path / "out" / "training_logs.txt").read_text()
    assert "Train samples: 8 (messages rows: loss on the assistant turns)" in log
    assert ("Note: the validation rows are not instruction/input/output records: intent accuracy is off "
            "(eval_loss is still computed)") in log
    assert prepared.trainer.intent_evaluator is None
    _train_and_check_learning(prepared.trainer)
    assert any("eval_loss" in entry for entry in prepared.trainer.state.log_history)  # evaluated at step 2


def test_conversational_prompt_completion_from_save_to_disk_trains_on_the_completion(tmp_path, tokenizer):
    from datasets import Dataset, DatasetDict

    from ethsft.training.recipe import build_trainer

    records = _records(8, 2)
    path = tmp_path / "saved"
    DatasetDict({"train": Dataset.from_list([to_prompt_completion(r) for r in records])}).save_to_disk(str(path))
    prepared = build_trainer(tiny_settings(path, tmp_path / "out", "training.max_steps=2"))
    for row, record in zip(prepared.trainer.train_dataset, records):
        assert [tokenizer.decode(s) for s in _trained_spans(row["input_ids"], row["labels"])] == \
            [record["output"] + "</s>"]
        ours = render(record, tokenizer)
        assert (row["input_ids"], row["labels"]) == (ours.input_ids, ours.labels)
    _train_and_check_learning(prepared.trainer)


def test_plain_prompt_completion_from_a_hub_style_repo_trains_on_the_completion_and_eos(tmp_path, tokenizer):
    from datasets import Dataset

    from ethsft.training.recipe import build_trainer

    rows = [{"prompt": f"Transaction {r['input']}\nIntent:", "completion": " " + r["output"], "source": "synth"}
            for r in _records(8, 3)]
    root = tmp_path / "eth-intents"
    (root / "data").mkdir(parents=True)
    Dataset.from_list(rows).to_parquet(str(root / "data" / "train.parquet"))
    prepared = build_trainer(tiny_settings(root, tmp_path / "out", "training.max_steps=2"))
    for row, source in zip(prepared.trainer.train_dataset, rows):
        assert row["input_ids"] == tokenizer(source["prompt"] + source["completion"] + "</s>").input_ids
        assert [tokenizer.decode(s) for s in _trained_spans(row["input_ids"], row["labels"])] == \
            [source["completion"].strip() + "</s>"]
        assert row["labels"][:len(tokenizer(source["prompt"]).input_ids)] == [-100] * len(
            tokenizer(source["prompt"]).input_ids)
    _train_and_check_learning(prepared.trainer)


def test_text_rows_train_every_token_through_the_cli(tmp_path, tokenizer):
    from click.testing import CliRunner
    from safetensors.torch import load_file

    from ethsft.cli import cli

    root = tmp_path / "texts"
    root.mkdir()
    write_split(root / "train.jsonl", [{"text": f"{r['input']} => {r['output']}"} for r in _records(8, 4)])
    out = tmp_path / "out"
    result = CliRunner().invoke(cli, ["train", "--config", "configs/tiny_cpu.yaml", "--dataset", str(root),
                                      "--output", str(out), "--set", "training.max_steps=2"])
    assert result.exit_code == 0, result.output
    assert "Train samples: 8 (text rows: loss on every token)" in result.output
    assert json.loads((out / "run_summary.json").read_text())["global_step"] == 2
    adapter = load_file(str(out / "adapter_model.safetensors"))
    assert any(name.endswith("lora_B.weight") and tensor.abs().max() > 0 for name, tensor in adapter.items())

    from ethsft.data.records import tokenize_split
    from ethsft.data.sources import read_splits

    rows = read_splits(root)["train"]
    ds, _ = tokenize_split(rows, tokenizer, 512, "truncate", None, "train")
    for ids, labels, row in zip(ds["input_ids"], ds["labels"], rows):
        assert ids == labels == tokenizer(row["text"] + "</s>").input_ids  # BOS, every token and EOS, as TRL does
