"""Rows of every TRL dataset format: read and checked with errors naming the file, line and key; overlong rows
handled and counted (the answer kept whole where a row is a prompt and one answer, TRL's keep_start otherwise)."""

from __future__ import annotations

import json

import pytest

from conftest import INSTRUCTION
from ethsft.data.records import DataError, read_records, tokenize_split

GOOD = {"instruction": INSTRUCTION, "input": '{"to":"0xab"}', "output": '{"action":"transfer"}'}
CHAT = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}


def jsonl(path, *rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def _error(path, **kwargs) -> str:
    with pytest.raises(DataError) as e:
        read_records(path, **kwargs)
    return str(e.value)


def test_each_format_reads_as_its_own_keys(tmp_path):
    rows = {"alpaca": {**GOOD, "id": 1}, "messages": CHAT, "text": {"text": "x", "meta": 2},
            "plain": {"prompt": "p", "completion": "c"},
            "chat": {"prompt": [{"role": "user", "content": "p"}],
                     "completion": [{"role": "assistant", "content": "c", "tool_calls": None}]}}
    read = {name: read_records(jsonl(tmp_path / f"{name}.jsonl", row))[0] for name, row in rows.items()}
    assert read == {"alpaca": GOOD, "messages": CHAT, "text": {"text": "x"},
                    "plain": {"prompt": "p", "completion": "c"},
                    "chat": {"prompt": [{"role": "user", "content": "p"}],
                             "completion": [{"role": "assistant", "content": "c"}]}}


def test_bad_rows_are_named_by_file_line_and_key(tmp_path):
    path = jsonl(tmp_path / "a.jsonl", CHAT, {"text": "x"})
    assert _error(path) == f"{path}:2: a text row after messages rows; every row of a split needs the same format"
    path = jsonl(tmp_path / "mixed.jsonl", {"prompt": "p", "completion": "c"},
                 {"prompt": [{"role": "user", "content": "p"}], "completion": [{"role": "assistant", "content": "c"}]})
    assert _error(path) == (f"{path}:2: a chat-message prompt/completion row after plain-string ones; every row of "
                            "a split needs the same format")
    path = jsonl(tmp_path / "b.jsonl", {"question": "q", "answer": "a"})
    assert _error(path) == (f"{path}:1: no dataset format matches the record's keys (question, answer); expected "
                            "the keys of instruction/input/output, prompt/completion, messages or text")
    path = jsonl(tmp_path / "c.jsonl", {"prompt": "p"})
    assert _error(path) == f"{path}:1: record is missing 'completion' (expected keys: prompt, completion)"
    path = jsonl(tmp_path / "d.jsonl", {"messages": [{"role": "user", "content": "a"}]})
    assert _error(path) == (f"{path}:1: 'messages' has no assistant turn with content; every row needs an answer "
                            "the model should learn")
    path = jsonl(tmp_path / "e.jsonl", {"messages": [{"role": "assistant", "content": "", "tool_calls": []}]})
    assert _error(path) == f"{path}:1: 'messages'[0] has 'tool_calls'; ethsft trains messages of role and content only"
    path = jsonl(tmp_path / "f.jsonl", {"messages": [{"role": "user", "content": 3}]})
    assert _error(path) == f"{path}:1: 'messages'[0] must be an object with string 'role' and 'content'"
    path = jsonl(tmp_path / "g.jsonl", {"prompt": "p", "completion": "  "})
    assert _error(path) == f"{path}:1: 'completion' is empty; every row needs the answer the model should learn"
    path = jsonl(tmp_path / "h.jsonl", {"text": ["x"]})
    assert _error(path) == f"{path}:1: 'text' must be a string, got list"


def test_the_intent_metrics_refuse_rows_that_are_not_records(tmp_path):
    from ethsft.evaluation.evaluate import load_records

    path = jsonl(tmp_path / "test.jsonl", CHAT)
    with pytest.raises(DataError) as e:
        load_records(path)
    assert str(e.value) == f"{path}: its rows are messages; instruction/input/output records are needed here"


def test_overlong_multi_turn_and_text_rows_keep_their_start_and_are_counted(tokenizer):
    turns = {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b " * 30},
                          {"role": "user", "content": "c"}, {"role": "assistant", "content": "d " * 30}]}
    text = {"text": "e " * 60}
    no_answer_left = {"messages": [{"role": "user", "content": "f " * 60}, {"role": "assistant", "content": "g"},
                                   {"role": "user", "content": "h"}, {"role": "assistant", "content": "i"}]}
    ds, report = tokenize_split([turns, text, no_answer_left], tokenizer, 40, "truncate", None, "train")
    assert len(ds) == 2 and [len(ids) for ids in ds["input_ids"]] == [40, 40]
    from ethsft.data.formatting import render

    for row, ids, labels in zip((turns, text), ds["input_ids"], ds["labels"]):
        full = render(row, tokenizer)
        assert (ids, labels) == (full.input_ids[:40], full.labels[:40])
    assert (report.overlong, report.cut_end, report.dropped) == (3, 2, 1)
    assert report.message() == (f"train: 3 of 3 samples longer than 40 tokens: 2 kept their first 40 tokens (several "
                                f"assistant turns or text), 1 dropped (the answer alone does not fit); longest "
                                f"{report.longest}. Set data.max_length or data.overlong to change this.")


def test_an_overlong_plain_prompt_is_cut_in_the_middle_keeping_the_completion(tokenizer):
    row = {"prompt": "Transaction " + "0xab " * 40 + "\nIntent:", "completion": ' {"action":"swap"}'}
    ds, report = tokenize_split([row], tokenizer, 32, "truncate", None, "train")
    ids, labels = ds["input_ids"][0], ds["labels"][0]
    answer = [t for t in labels if t != -100]
    assert len(ids) == 32 and ids[-len(answer):] == answer and tokenizer.decode(answer) == '{"action":"swap"}</s>'
    assert ids[0] == tokenizer.bos_token_id and tokenizer.decode(ids[-len(answer) - 3:-len(answer)]).endswith("Intent:")
    assert (report.overlong, report.cut_end, report.dropped) == (1, 0, 0)


def test_a_dataset_whose_columns_make_no_format_is_named(tmp_path):
    from datasets import Dataset, DatasetDict

    from ethsft.data.sources import read_splits

    path = tmp_path / "qa"
    DatasetDict({"train": Dataset.from_list([{"question": "q", "answer": "a"}])}).save_to_disk(str(path))
    with pytest.raises(DataError) as e:
        read_splits(path)
    assert str(e.value) == (f"{path} [train]: no dataset format matches the columns (question, answer); expected "
                            "the columns of instruction/input/output, prompt/completion, messages or text")


def test_loading_says_each_splits_format_and_what_does_not_apply(tokenizer):
    from types import SimpleNamespace

    from ethsft.data.records import load_splits

    said = []
    settings = SimpleNamespace(max_length=512, overlong="truncate", system_prompt="Be brief.")
    load_splits({"train": [{"text": "a b"}], "validation": [CHAT]}, tokenizer, settings, said.append)
    assert said == ["Train samples: 1 (text rows: loss on every token)",
                    "Validation samples: 1 (messages rows: loss on the assistant turns)",
                    "Note: data.system_prompt applies to chat rows only; plain prompt/completion and text rows are "
                    "trained as they are",
                    "Note: the validation rows are not instruction/input/output records: intent accuracy is off "
                    "(eval_loss is still computed)"]
