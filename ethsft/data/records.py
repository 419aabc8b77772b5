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


def read_records(path: str | Path, allow_empty: bool = False) -> list[dict]:
    """Read and check an instruction JSONL file: every line a JSON object with string instruction/input/output.
    An empty file is an error unless ``allow_empty`` (an optional split: `prepare --split 0.8 0.2 0` writes an
    empty test.jsonl, which training does without)."""
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
    if not records and not allow_empty:
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
    """What happened to samples longer than max_length: counted and reported, never silent.

    ``truncate`` keeps the answer whole: the prompt loses tokens from its middle (its start, the instruction,
    and its end, the last of the input and the template's assistant marker, stay), so every sample still
    trains on its whole answer and end-of-turn token. A sample whose answer alone does not fit is dropped
    (``dropped``); ``drop`` drops every overlong sample."""

    split: str
    max_length: int
    policy: str
    total: int = 0
    overlong: int = 0
    dropped: int = 0
    longest: int = 0
    lengths: list[int] = field(default_factory=list, repr=False)

    def message(self) -> str | None:
        if not self.overlong:
            return None
        head = f"{self.split}: {self.overlong} of {self.total} samples"
        tail = f"; longest {self.longest}. Set data.max_length or data.overlong to change this."
        if self.policy == "drop":
            return f"{head} dropped (longer than {self.max_length} tokens){tail}"
        if not self.dropped:
            return (f"{head} longer than {self.max_length} tokens had their prompt cut in the middle to keep the "
                    f"answer whole{tail}")
        return (f"{head} longer than {self.max_length} tokens: {self.overlong - self.dropped} had their prompt cut "
                f"in the middle to keep the answer whole, {self.dropped} dropped (the answer alone does not "
                f"fit){tail}")


def _prompt_tail(tokenizer, system: str | None) -> int:
    """How many tokens end every prompt whatever its text: the template's close of the user turn and the assistant
    marker the answer follows (Mistral's ``[/INST]``, ChatML's ``<|im_end|>`` + ``<|im_start|>assistant``)."""
    prompts = []
    for text in ("1", "2"):
        rendered = render({"instruction": "a", "input": text, "output": "x"}, tokenizer, system)
        mask = rendered.loss_mask
        prompts.append(rendered.input_ids[:mask.index(True) if True in mask else len(mask)])
    a, b = prompts
    n = 0
    while n < min(len(a), len(b)) and a[-1 - n] == b[-1 - n]:
        n += 1
    return n


def fit_prompt(ids: list[int], tokenizer, max_length: int, overlong: str, where: str) -> list[int]:
    """A generation prompt of at most ``max_length`` tokens, by training's rule (``data.overlong``): ``truncate`` cuts
    its middle, keeping its start (the instruction) and its end (the assistant marker); ``drop`` refuses it
    (DataError). A model is never handed more than it trained on."""
    if len(ids) <= max_length:
        return ids
    if overlong == "drop":
        raise DataError(f"{where}: {len(ids)} tokens, longer than data.max_length={max_length}, and data.overlong is "
                        "'drop'; shorten it")
    tail = _prompt_tail(tokenizer, None)
    if max_length < tail + 1:
        raise DataError(f"{where}: {len(ids)} tokens; data.max_length={max_length} leaves no room for its text")
    from ethsft.config.schema import notice

    keep_end = tail + (max_length - tail) // 2
    notice(f"{where}: {len(ids)} tokens cut in the middle to data.max_length={max_length} (data.overlong: truncate)")
    return ids[:max_length - keep_end] + ids[len(ids) - keep_end:]


def tokenize_split(records: list[dict], tokenizer, max_length: int, overlong: str, system: str | None,
                   split: str):
    """Records -> a ``datasets.Dataset`` of ``input_ids`` + ``completion_mask`` that SFTTrainer trains on as is.

    ethsft tokenizes once itself (``formatting.render``, the same prompt/completion split TRL makes) so it
    can count and handle samples over ``max_length`` instead of letting them be cut silently. No sample is
    trained without its answer: ``truncate`` shortens the prompt (see ``LengthReport``) and drops a sample whose
    answer does not fit even then; a split left empty is a DataError.
    """
    from datasets import Dataset

    report = LengthReport(split, max_length, overlong)
    rows = {"input_ids": [], "completion_mask": []}
    tail = None
    for number, record in enumerate(records, start=1):
        rendered = render(record, tokenizer, system)
        ids, mask = rendered.input_ids, [int(m) for m in rendered.loss_mask]
        if 1 not in mask:
            raise DataError(f"{split}: record {number}: its answer renders to no token the loss falls on with this "
                            "chat template; check model.chat_template")
        report.total += 1
        report.lengths.append(len(ids))
        if len(ids) > max_length:
            report.overlong += 1
            report.longest = max(report.longest, len(ids))
            if overlong == "drop":
                report.dropped += 1
                continue
            start = mask.index(1)
            end = len(mask) - mask[::-1].index(1)  # past the end-of-turn token; template layout after it goes
            budget = max_length - (end - start)  # prompt tokens that fit beside the whole answer
            if start > budget:
                tail = _prompt_tail(tokenizer, system) if tail is None else tail
                if budget < tail + 1:  # not even the assistant marker and one token of prompt fit
                    report.dropped += 1
                    continue
                keep_end = tail + (budget - tail) // 2  # the prompt's last tokens, the assistant marker among them
                ids = ids[:budget - keep_end] + ids[start - keep_end:end]
                mask = [0] * budget + [1] * (end - start)
            else:
                ids, mask = ids[:end], mask[:end]
        rows["input_ids"].append(ids)
        rows["completion_mask"].append(mask)
    if not rows["input_ids"]:
        why = ("and data.overlong is 'drop'" if overlong == "drop"
               else "even with their prompt cut (the answer alone does not fit)")
        raise DataError(f"{split}: all {report.total} samples are longer than data.max_length={max_length} {why}; "
                        f"nothing is left to {'train' if split == 'train' else 'evaluate'} on")
    return Dataset.from_dict(rows), report


def load_splits(records: dict[str, list[dict]], tokenizer, data_args, say) -> tuple[dict, dict]:
    """Report counts and overlong samples of the ``records`` by split (``sources.read_splits``) through ``say``,
    tokenize train and validation.

    Returns the records by split and ``{split: (dataset, LengthReport)}`` for train and validation.
    """
    import datasets

    datasets.disable_progress_bars()  # ethsft reports what matters (counts, overlong samples) itself
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
