"""Instruction datasets on disk -> tokenized splits (ethsft/data/records.py): malformed lines, missing keys, wrong
types, empty splits and non-UTF-8 bytes fail with a message naming the file, row or key and what was expected;
overlong samples are cut in the prompt's middle (the answer kept whole) or dropped, and always counted. The
messages are asserted word for word: they are the user interface of a failed run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import INSTRUCTION
from ethsft.data.records import DataError, read_records, tokenize_split

GOOD = {"instruction": INSTRUCTION, "input": '{"function":"transfer"}', "output": '{"action":"transfer"}'}
LONG = {**GOOD, "input": "0x" + "ab" * 400}  # a prompt of ~420 Mistral tokens; its answer is 6


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


def test_overlong_prompt_is_cut_in_the_middle_and_the_answer_kept_whole(tokenizer):
    from ethsft.data.formatting import render

    full = render(LONG, tokenizer)
    answer = [t for t, m in zip(full.input_ids, full.loss_mask) if m]
    ds, report = tokenize_split([GOOD, LONG], tokenizer, 64, "truncate", None, "train")
    ids, labels = ds["input_ids"][1], ds["labels"][1]
    assert len(ids) == 64 and labels == [-100] * 58 + answer and len(answer) == 6
    assert ids[-6:] == answer and ids[-1] == tokenizer.eos_token_id  # the whole answer and its </s>
    assert ids[:5] == full.input_ids[:5]  # <s> [INST] and the instruction's start
    assert tokenizer.decode(ids[-10:-6]) == "[/INST]"  # the assistant marker the answer follows
    assert (report.overlong, report.dropped) == (1, 0)
    assert report.message() == ("train: 1 of 2 samples longer than 64 tokens had their prompt cut in the middle to "
                                f"keep the answer whole; longest {len(full.input_ids)}. Set data.max_length or "
                                "data.overlong to change this.")


def test_a_sample_whose_answer_alone_does_not_fit_is_dropped_and_counted(tokenizer):
    long_answer = {**GOOD, "output": json.dumps({"action": "transfer", "note": "x" * 80})}
    ds, report = tokenize_split([LONG, long_answer], tokenizer, 24, "truncate", None, "train")
    assert len(ds) == 1 and sum(label != -100 for label in ds["labels"][0]) == 6
    assert (report.overlong, report.dropped) == (2, 1)
    assert report.message() == (f"train: 2 of 2 samples longer than 24 tokens: 1 had their prompt cut in the middle "
                                f"to keep the answer whole, 1 dropped (the answer alone does not fit); longest "
                                f"{report.longest}. Set data.max_length or data.overlong to change this.")
    with pytest.raises(DataError) as e:
        tokenize_split([long_answer], tokenizer, 24, "truncate", None, "train")
    assert str(e.value) == ("train: all 1 samples are longer than data.max_length=24 even with their prompt cut (the "
                            "answer alone does not fit); nothing is left to train on")
    with pytest.raises(DataError) as e:
        tokenize_split([LONG], tokenizer, 64, "drop", None, "validation")
    assert str(e.value) == ("validation: all 1 samples are longer than data.max_length=64 and data.overlong is "
                            "'drop'; nothing is left to evaluate on")


def test_chatml_prompt_cut_keeps_the_assistant_marker(chatml_tokenizer):
    ds, _ = tokenize_split([LONG], chatml_tokenizer, 40, "truncate", None, "train")
    ids, labels = ds["input_ids"][0], ds["labels"][0]
    start = next(i for i, label in enumerate(labels) if label != -100)
    assert labels[start:] == ids[start:]
    assert len(ids) <= 40 and chatml_tokenizer.decode(ids[start:]).endswith("<|im_end|>\n")
    assert chatml_tokenizer.decode(ids[:start]).endswith("<|im_end|>\n<|im_start|>assistant\n")
