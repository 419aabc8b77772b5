"""Instruction datasets on disk -> tokenized TRL datasets, with errors that name the file and line."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ethsft.data.formatting import REQUIRED_FIELDS, render

SPLITS = ("train", "validation", "test")  # each written and read as <name>.jsonl
INSTRUCTION = "Extract the structured intent from this Ethereum transaction:"  # what `ethsft prepare` writes


class DataError(ValueError):
    """A structural problem with an input file, a dataset or an option (fatal): the message names the file and,
    where it applies, the row or line and the column. (Per-row value problems in `prepare` are not raised: they
    go to rejects.jsonl.)"""


def read_records(path: str | Path) -> list[dict]:
    """Read and check an instruction JSONL file: every line a JSON object with string instruction/input/output."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    records = []
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{lineno}: not valid UTF-8 (column {e.start + 1}: byte {raw[e.start:e.start + 1]!r}); "
                                "re-encode the file as UTF-8") from None
            if not line.strip():
                continue
            try:
                record = json.loads(line.rstrip("\r\n"))  # so that an error's column is on this line
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno}); "
                                "expected one object per line with instruction, input, output") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object with instruction, input, output; "
                                f"got {type(record).__name__}")
            check_record(record, f"{path}:{lineno}")
            records.append(record)
    if not records:
        raise DataError(f"{path}: empty split file; expected JSONL records with instruction, input, output")
    return records


def check_record(record: dict, where: str) -> None:
    for key in REQUIRED_FIELDS:
        if key not in record:
            raise DataError(f"{where}: record is missing '{key}' (expected keys: {', '.join(REQUIRED_FIELDS)})")
        value = record[key]
        if not isinstance(value, str):
            raise DataError(f"{where}: '{key}' must be a string, got {type(value).__name__}")
    if not record["output"].strip():
        raise DataError(f"{where}: 'output' is empty; every record needs the answer the model should learn")


@dataclass
class LengthReport:
    """What happened to samples longer than max_length: counted and reported, never silent."""

    split: str
    max_length: int
    policy: str
    total: int = 0
    overlong: int = 0
    longest: int = 0
    lengths: list[int] = field(default_factory=list, repr=False)

    def message(self) -> str | None:
        if not self.overlong:
            return None
        verb = "truncated to" if self.policy == "truncate" else "dropped (longer than"
        tail = "" if self.policy == "truncate" else ")"
        return (f"{self.split}: {self.overlong} of {self.total} samples {verb} {self.max_length} tokens{tail}; "
                f"longest {self.longest}. Set data.max_length or data.overlong to change this.")


def tokenize_split(records: list[dict], tokenizer, max_length: int, overlong: str, system: str | None,
                   split: str):
    """Records -> a ``datasets.Dataset`` of ``input_ids`` + ``completion_mask`` that SFTTrainer trains on as is.

    ethsft tokenizes once itself (``formatting.render``, the same prompt/completion split TRL makes) so it
    can count and handle samples over ``max_length`` instead of letting them be cut silently.
    """
    from datasets import Dataset

    report = LengthReport(split, max_length, overlong)
    rows = {"input_ids": [], "completion_mask": []}
    for record in records:
        rendered = render(record, tokenizer, system)
        ids, mask = rendered.input_ids, [int(m) for m in rendered.loss_mask]
        report.total += 1
        report.lengths.append(len(ids))
        if len(ids) > max_length:
            report.overlong += 1
            report.longest = max(report.longest, len(ids))
            if overlong == "drop":
                continue
            ids, mask = ids[:max_length], mask[:max_length]
        rows["input_ids"].append(ids)
        rows["completion_mask"].append(mask)
    if not rows["input_ids"]:
        raise DataError(f"{split}: all {report.total} samples are longer than data.max_length={max_length} "
                        "and data.overlong is 'drop'; nothing is left to train on")
    return Dataset.from_dict(rows), report


def load_splits(paths: dict[str, Path], tokenizer, data_args, say) -> tuple[dict, dict]:
    """Read every split, report counts and overlong samples through ``say``, tokenize train and validation.

    Returns the records by split and ``{split: (dataset, LengthReport)}`` for train and validation.
    """
    import datasets

    datasets.disable_progress_bars()  # ethsft reports what matters (counts, overlong samples) itself
    records = {name: read_records(path) for name, path in paths.items()}
    for name in SPLITS:
        if name in records:
            say(f"{name.capitalize()} samples: {len(records[name])}")
    tokenized = {name: tokenize_split(records[name], tokenizer, data_args.max_length, data_args.overlong,
                                      data_args.system_prompt, name)
                 for name in ("train", "validation") if name in records}
    for _, report in tokenized.values():
        if report.message():
            say(f"Warning: {report.message()}")
    return records, tokenized


def split_paths(dataset_dir: str | Path) -> dict[str, Path]:
    """The split files under ``dataset_dir``; train is required, validation and test optional."""
    root = Path(dataset_dir)
    if not root.is_dir():
        raise DataError(f"dataset folder not found: {root} (expected train.jsonl, validation.jsonl, test.jsonl; "
                        "make one with `ethsft prepare`)")
    paths = {name: root / f"{name}.jsonl" for name in SPLITS if (root / f"{name}.jsonl").exists()}
    if "train" not in paths:
        raise DataError(f"{root}: no train.jsonl (expected train.jsonl, validation.jsonl, test.jsonl)")
    return paths
