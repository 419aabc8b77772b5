"""Datasets on disk -> tokenized TRL datasets, with errors that name the file and line.

A split holds rows of one of TRL's dataset formats, told apart by their keys (``formatting.row_format``):
instruction/input/output records (what ``ethsft prepare`` writes), ``prompt``/``completion`` (plain strings or
chat messages), ``messages`` and ``text``. The loss falls where ``formatting.render`` puts it: on completions and
assistant turns, and on every token of a ``text`` row."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ethsft.data.formatting import FORMATS, FORMATS_TEXT, REQUIRED_FIELDS, render, row_format

SPLITS = ("train", "validation", "test")  # each written and read as <name>.jsonl
INSTRUCTION = "Extract the structured intent from this Ethereum transaction:"  # what `ethsft prepare` writes
FORMAT_NAMES = {"alpaca": "instruction/input/output", "prompt_completion": "prompt/completion",
                "messages": "messages", "text": "text"}


class DataError(ValueError):
    """A structural problem with an input file, a dataset or an option (fatal): the message names the file and,
    where it applies, the row or line and the column. (Per-row value problems in `prepare` are not raised: they
    go to rejects.jsonl.)"""


def read_records(path: str | Path, only: str | None = None, allow_empty: bool = False) -> list[dict]:
    """Read and check a JSONL split: every line a JSON object of one dataset format, the same on every line
    (``check_record``). ``only``: the one format accepted (e.g. ``alpaca`` where the intent is scored). An empty
    file is an error unless ``allow_empty`` (an optional split: `prepare --split 0.8 0.2 0` writes an empty
    test.jsonl, which training does without)."""
    from trl.data_utils import is_conversational

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    records, kind = [], None
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
                                f"expected one object per line with the keys of {FORMATS_TEXT}") from None
            if not isinstance(record, dict):
                raise DataError(f"{path}:{lineno}: expected a JSON object with the keys of {FORMATS_TEXT}; "
                                f"got {type(record).__name__}")
            record = check_record(record, f"{path}:{lineno}", kind)
            if records and is_conversational(record) != is_conversational(records[0]):
                shapes = {True: "chat-message", False: "plain-string"}
                raise DataError(f"{path}:{lineno}: a {shapes[is_conversational(record)]} prompt/completion row after "
                                f"{shapes[is_conversational(records[0])]} ones; every row of a split needs the same "
                                "format")
            kind = kind or row_format(record)
            records.append(record)
    if not records and not allow_empty:
        raise DataError(f"{path}: empty split file; expected JSONL records with the keys of {FORMATS_TEXT}")
    if records and only and kind != only:
        raise DataError(f"{path}: its rows are {FORMAT_NAMES[kind]}; {FORMAT_NAMES[only]} records are needed here")
    return records


def check_record(record: dict, where: str, expected: str | None = None) -> dict:
    """The row's format's keys, checked (``expected``: the format the split's earlier rows have); DataError naming
    ``where`` and the key at fault otherwise."""
    kind = row_format(record)
    if kind is None:
        raise DataError(f"{where}: {_no_format(record, 'record')}")
    if expected and kind != expected:
        raise DataError(f"{where}: a {FORMAT_NAMES[kind]} row after {FORMAT_NAMES[expected]} rows; every row of a "
                        "split needs the same format")
    row = {key: record[key] for key in FORMATS[kind]}
    if kind == "alpaca":
        for key in REQUIRED_FIELDS:
            _string(row, key, where)
        if not row["output"].strip():
            raise DataError(f"{where}: 'output' is empty; every record needs the answer the model should learn")
    elif kind == "text":
        if not _string(row, "text", where).strip():
            raise DataError(f"{where}: 'text' is empty")
    elif kind == "messages":
        row["messages"] = _messages(row["messages"], "messages", where)
        if not any(m["role"] == "assistant" and m["content"].strip() for m in row["messages"]):
            raise DataError(f"{where}: 'messages' has no assistant turn with content; every row needs an answer the "
                            "model should learn")
    elif isinstance(row["prompt"], list):
        row = {key: _messages(row[key], key, where) for key in ("prompt", "completion")}
        if not any(m["content"].strip() for m in row["completion"]):
            raise DataError(f"{where}: 'completion' is empty; every row needs the answer the model should learn")
    else:
        _string(row, "prompt", where)
        if not _string(row, "completion", where).strip():
            raise DataError(f"{where}: 'completion' is empty; every row needs the answer the model should learn")
    return row


def _no_format(keys, noun: str) -> str:
    """Why ``keys`` make no dataset format: the keys a partly present format lacks, else the formats expected."""
    keys = list(keys)
    for kind, needed in FORMATS.items():
        missing = [k for k in needed if k not in keys]
        if len(missing) < len(needed):
            names = ", ".join(repr(k) for k in missing)
            return f"{noun} is missing {names} (expected keys: {', '.join(needed)})"
    found = ", ".join(map(str, keys)) or "none"
    return f"no dataset format matches the {noun}'s keys ({found}); expected the keys of {FORMATS_TEXT}"


def _string(row: dict, key: str, where: str) -> str:
    if not isinstance(row[key], str):
        raise DataError(f"{where}: '{key}' must be a string, got {type(row[key]).__name__}")
    return row[key]


def _messages(value, key: str, where: str) -> list[dict]:
    """Chat messages as ``{"role", "content"}`` strings; keys other than those must be unset (Arrow fills a key
    another row has with None)."""
    if not isinstance(value, list) or not value:
        raise DataError(f"{where}: '{key}' must be a non-empty list of messages, got {type(value).__name__}")
    out = []
    for i, message in enumerate(value):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str) \
                or not isinstance(message.get("content"), str):
            raise DataError(f"{where}: '{key}'[{i}] must be an object with string 'role' and 'content'")
        extra = sorted(k for k, v in message.items() if k not in ("role", "content") and v is not None)
        if extra:
            raise DataError(f"{where}: '{key}'[{i}] has {', '.join(repr(k) for k in extra)}; ethsft trains messages "
                            "of role and content only")
        out.append({"role": message["role"], "content": message["content"]})
    return out


@dataclass
class LengthReport:
    """What happened to samples longer than max_length: counted and reported, never silent.

    ``truncate`` keeps the answer whole where a row is a prompt and its answer (instruction records,
    prompt/completion rows, a conversation whose one assistant turn ends it): the prompt loses tokens from its
    middle (its start, the instruction, and its end, the last of the input and the template's assistant marker,
    stay), so every sample still trains on its whole answer and end-of-turn token. A sample whose answer alone
    does not fit is dropped (``dropped``). Other rows (several assistant turns, ``text``) keep their first
    max_length tokens, as TRL's ``truncation_mode="keep_start"`` does (``cut_end``), and are dropped when no
    trained token is left. ``drop`` drops every overlong sample."""

    split: str
    max_length: int
    policy: str
    total: int = 0
    overlong: int = 0
    dropped: int = 0
    cut_end: int = 0
    longest: int = 0
    lengths: list[int] = field(default_factory=list, repr=False)

    def message(self) -> str | None:
        if not self.overlong:
            return None
        head = f"{self.split}: {self.overlong} of {self.total} samples"
        tail = f"; longest {self.longest}. Set data.max_length or data.overlong to change this."
        if self.policy == "drop":
            return f"{head} dropped (longer than {self.max_length} tokens){tail}"
        middle = self.overlong - self.dropped - self.cut_end
        if middle == self.overlong:
            return (f"{head} longer than {self.max_length} tokens had their prompt cut in the middle to keep the "
                    f"answer whole{tail}")
        parts = [f"{middle} had their prompt cut in the middle to keep the answer whole"] if middle else []
        if self.cut_end:
            parts.append(f"{self.cut_end} kept their first {self.max_length} tokens (several assistant turns or "
                         "text)")
        if self.dropped:
            parts.append(f"{self.dropped} dropped (the answer alone does not fit)")
        return f"{head} longer than {self.max_length} tokens: {', '.join(parts)}{tail}"


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


def fit_prompt(ids: list[int], tokenizer, max_length: int, overlong: str, where: str, say=None) -> list[int]:
    """A generation prompt of at most ``max_length`` tokens, by training's rule (``data.overlong``): ``truncate`` cuts
    its middle, keeping its start (the instruction) and its end (the assistant marker), and tells ``say``; ``drop``
    refuses it (DataError). A model is never handed more than it trained on."""
    if len(ids) <= max_length:
        return ids
    if overlong == "drop":
        raise DataError(f"{where}: {len(ids)} tokens, longer than data.max_length={max_length}, and data.overlong is "
                        "'drop'; shorten it")
    tail = _prompt_tail(tokenizer, None)
    if max_length < tail + 1:
        raise DataError(f"{where}: {len(ids)} tokens; data.max_length={max_length} leaves no room for its text")
    keep_end = tail + (max_length - tail) // 2
    if say is not None:
        say(f"{where}: {len(ids)} tokens cut in the middle to data.max_length={max_length} (data.overlong: truncate)")
    return ids[:max_length - keep_end] + ids[len(ids) - keep_end:]


def tokenize_split(records: list[dict], tokenizer, max_length: int, overlong: str, system: str | None,
                   split: str):
    """Rows -> a ``datasets.Dataset`` of ``input_ids`` + ``labels`` (-100 where no loss falls) that SFTTrainer
    trains on as they are.

    ethsft tokenizes once itself (``formatting.render``, the split TRL makes) so it can count and handle samples
    over ``max_length`` instead of letting them be cut silently (see ``LengthReport``). No sample is trained
    without an answer: one left without a trained token is dropped; a split left empty is a DataError.
    """
    from datasets import Dataset

    report = LengthReport(split, max_length, overlong)
    rows = {"input_ids": [], "labels": []}
    tail = None
    for number, record in enumerate(records, start=1):
        rendered = render(record, tokenizer, system)
        ids, labels, mask = rendered.input_ids, rendered.labels, rendered.loss_mask
        if True not in mask:
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
            start = mask.index(True)
            end = len(mask) - mask[::-1].index(True)  # past the last trained token
            if start == 0 or not all(mask[start:end]) or any(mask[end:]) or end != len(ids):
                # not a prompt and one answer ending the row: keep the start, as TRL's keep_start does
                ids, labels = ids[:max_length], labels[:max_length]
                if all(label == -100 for label in labels):
                    report.dropped += 1
                    continue
                report.cut_end += 1
            else:
                budget = max_length - (end - start)  # prompt tokens that fit beside the whole answer
                if start > budget:
                    if tail is None:  # the template's end of every prompt; plain strings have no template
                        tail = _prompt_tail(tokenizer, system) if _chat_row(record) else 0
                    if budget < tail + 1:  # not even the assistant marker and one token of prompt fit
                        report.dropped += 1
                        continue
                    keep_end = tail + (budget - tail) // 2  # the prompt's last tokens, the assistant marker among them
                    ids = ids[:budget - keep_end] + ids[start - keep_end:end]
                    labels = [-100] * budget + labels[start:end]
        rows["input_ids"].append(ids)
        rows["labels"].append(labels)
    if not rows["input_ids"]:
        why = ("and data.overlong is 'drop'" if overlong == "drop"
               else "even with their prompt cut (the answer alone does not fit)")
        raise DataError(f"{split}: all {report.total} samples are longer than data.max_length={max_length} {why}; "
                        f"nothing is left to {'train' if split == 'train' else 'evaluate'} on")
    return Dataset.from_dict(rows), report


def _chat_row(record: dict) -> bool:
    from trl.data_utils import is_conversational

    return row_format(record) == "alpaca" or is_conversational(record)


def intent_records(records: list[dict]) -> list[dict]:
    """The rows the intent metrics can score: instruction records (the intent is their 'output'); none for the
    other formats."""
    return records if records and row_format(records[0]) == "alpaca" else []


def load_splits(records: dict[str, list[dict]], tokenizer, data_args, say) -> tuple[dict, dict]:
    """Report counts, formats and overlong samples of the ``records`` by split (``sources.read_splits``) through
    ``say``, tokenize train and validation.

    Returns the records by split and ``{split: (dataset, LengthReport)}`` for train and validation.
    """
    import datasets

    datasets.disable_progress_bars()  # ethsft reports what matters (counts, overlong samples) itself
    for name in SPLITS:
        if name in records:
            kind = row_format(records[name][0])
            say(f"{name.capitalize()} samples: {len(records[name])}" +
                ("" if kind == "alpaca" else f" ({FORMAT_NAMES[kind]} rows: {_LOSS[kind]})"))
    if data_args.system_prompt and any(not _chat_row(rows[0]) for rows in records.values()):
        say("Note: data.system_prompt applies to chat rows only; plain prompt/completion and text rows are "
            "trained as they are")
    if "validation" in records and not intent_records(records["validation"]):
        say("Note: the validation rows are not instruction/input/output records: intent accuracy is off "
            "(eval_loss is still computed)")
    tokenized = {name: tokenize_split(records[name], tokenizer, data_args.max_length, data_args.overlong,
                                      data_args.system_prompt, name)
                 for name in ("train", "validation") if name in records}
    for _, report in tokenized.values():
        if report.message():
            say(f"Warning: {report.message()}")
    return records, tokenized


_LOSS = {"prompt_completion": "loss on the completions", "messages": "loss on the assistant turns",
         "text": "loss on every token"}


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
