"""A dataset's token counts with the model's own tokenizer and chat template, exactly as ``ethsft train``
tokenizes, and what batching makes of them (packed rows, padded micro-batches): the estimate sizes a run by real
sample lengths rather than the worst case."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from ethsft.config.schema import Settings
from ethsft.planning.shapes import ModelShape, model_shape


@dataclass
class SplitStats:
    name: str
    lengths: list[int]             # tokens per sample, as rendered, before truncation
    completion: list[int]          # tokens the loss falls on
    max_length: int
    policy: str

    @property
    def count(self) -> int:
        return len(self.lengths)

    @property
    def overlong(self) -> int:
        return sum(1 for n in self.lengths if n > self.max_length)

    def trained_lengths(self) -> list[int]:
        """Lengths of the samples training sees: truncated or dropped as data.overlong says."""
        if self.policy == "drop":
            return [n for n in self.lengths if n <= self.max_length]
        return [min(n, self.max_length) for n in self.lengths]

    @property
    def total(self) -> int:
        return sum(self.lengths)

    def percentile(self, p: float) -> int:
        xs = sorted(self.lengths)
        return xs[min(len(xs) - 1, max(0, math.ceil(p / 100 * len(xs)) - 1))]


@dataclass
class DatasetStats:
    splits: dict[str, SplitStats]
    tokenizer: str
    exact: bool = True
    notes: list[str] = field(default_factory=list)


def load_counting_tokenizer(s: Settings, shape: ModelShape):
    """The model's tokenizer with the chat template training uses; offline, the embedded Mistral tokenizer."""
    from ethsft.model.loading import load_tokenizer

    try:
        return load_tokenizer(s), s.model.base_model, True, None
    except Exception as e:
        from ethsft.model.embedded import build_tokenizer
        from ethsft.data.formatting import load_template

        tok = build_tokenizer()
        if s.model.chat_template not in ("auto", "mistral") and Path(s.model.chat_template).is_file():
            tok.chat_template = Path(s.model.chat_template).read_text(encoding="utf-8")
        else:
            tok.chat_template = load_template("mistral_instruct")
        exact = shape.tokenizer == "mistral-v1"
        why = f"{s.model.base_model}'s tokenizer is not available here ({type(e).__name__})"
        note = (f"{why}: counted with the identical Mistral v1 tokenizer" if exact
                else f"{why}: counted with the Mistral v1 tokenizer, so counts are approximate")
        return tok, "Mistral v1 (embedded)", exact, note


def dataset_stats(s: Settings, dataset_dir: str | Path | None = None, tokenizer=None) -> DatasetStats:
    """Token counts of every split under ``dataset_dir`` (default data.dataset_dir), as training renders them."""
    from ethsft.data.formatting import render
    from ethsft.data.sources import read_splits, split_names

    notes: list[str] = []
    exact, tok_name = True, s.model.base_model
    if tokenizer is None:
        tokenizer, tok_name, exact, note = load_counting_tokenizer(s, model_shape(s))
        if note:
            notes.append(note)
    splits = {}
    source = dataset_dir or s.data.dataset_dir
    for name, records in read_splits(source, s.data.dataset_config, split_names(s.data)).items():
        lengths, completion = [], []
        for record in records:
            rendered = render(record, tokenizer, s.data.system_prompt)
            lengths.append(len(rendered.input_ids))
            completion.append(sum(rendered.loss_mask))
        splits[name] = SplitStats(name, lengths, completion, s.data.max_length, s.data.overlong)
    return DatasetStats(splits, tok_name, exact, notes)


def pack_rows(lengths: list[int], max_length: int) -> list[int]:
    """Row lengths after TRL's best-fit-decreasing packing ("bfd": samples truncated, never split)."""
    import bisect

    free: list[tuple[int, int]] = []  # (space left, row index), sorted
    rows: list[int] = []
    for n in sorted((min(x, max_length) for x in lengths), reverse=True):
        i = bisect.bisect_left(free, (n, -1))
        if i < len(free):
            space, row = free.pop(i)
            rows[row] += n
            if space - n > 0:
                bisect.insort(free, (space - n, row))
        else:
            rows.append(n)
            if max_length - n > 0:
                bisect.insort(free, (max_length - n, len(rows) - 1))
    return rows


def expected_batch_max(lengths: list[int], b: int) -> float:
    """E[longest of b samples drawn from ``lengths``]: a padded micro-batch's row length."""
    xs = sorted(lengths)
    n = len(xs)
    if b <= 1:
        return sum(xs) / n
    return sum(x * ((k / n) ** b - ((k - 1) / n) ** b) for k, x in enumerate(xs, start=1))
