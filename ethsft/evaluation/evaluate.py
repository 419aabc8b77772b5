"""Evaluate a model on an instruction dataset: generate, parse, score, write predictions.jsonl + metrics.json."""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Sequence

from ethsft.data.records import DataError, read_records
from ethsft.data.formatting import prompt_messages
from ethsft.evaluation.generation import answer_budget, generate_texts
from ethsft.evaluation.metrics import compute_metrics, format_table, parse_intent, score
from ethsft.filenames import METRICS_FILE, PREDICTIONS_FILE



def load_records(dataset: str | Path | Sequence[dict], limit: int | None = None) -> list[dict]:
    """A JSONL file, a dataset folder (its test.jsonl), or records already in memory; the first ``limit``."""
    return _load_records(dataset, limit)[0]


def _load_records(dataset, limit: int | None = None) -> tuple[list[dict], list[str]]:
    """``load_records`` and where each record is: ``file:line`` for a file, ``record N`` for records in memory."""
    if isinstance(dataset, (str, Path)):
        path = Path(dataset)
        path = path / "test.jsonl" if path.is_dir() else path
        records = read_records(path, only="alpaca")  # the intent is scored against each record's output
        with path.open("rb") as fh:  # read_records skips blank lines: the same lines here
            where = [f"{path}:{n}" for n, raw in enumerate(fh, start=1) if raw.decode("utf-8").strip()]
    else:
        records = list(dataset)
        where = [f"record {i}" for i in range(1, len(records) + 1)]
    return (records[:limit], where[:limit]) if limit else (records, where)


def checked_records(dataset: str | Path | Sequence[dict], limit: int | None = None) -> list[dict]:
    """``load_records``, each reference checked (``references_of``): a bad dataset fails naming its file and line
    before any model loads."""
    records, where = _load_records(dataset, limit)
    references_of(records, where)
    return records


def references_of(records: Sequence[dict], where: Sequence[str] | None = None) -> list[dict]:
    """Each record's reference intent; DataError naming the record (``where``: its file:line) when one is no
    JSON object, since a reference that is not an intent object would make every score meaningless."""
    refs = []
    for i, r in enumerate(records):
        ref = parse_intent(r["output"])
        if ref is None:
            at = where[i] if where is not None else f"record {i + 1}"
            raise DataError(f"{at}: 'output' is not a JSON object: {r['output'][:80]!r}; the reference answer must "
                            "be the intent as a JSON object")
        refs.append(ref)
    return refs


def evaluate_records(model, tokenizer, records: Sequence[dict], batch_size: int = 16,
                     max_new_tokens: int | None = None, system_prompt: str | None = None,
                     progress: bool = False, stop=None, limit: tuple[int, str] | None = None
                     ) -> tuple[dict, list[dict]]:
    """Greedy answers for ``records`` scored against their outputs: (metrics, one row per record). ``stop`` (a
    ``stopping.SignalStop``): a signal ends generation with ``stopping.StopRequested`` and no result. ``limit``:
    the run's (data.max_length, data.overlong), applied to each prompt (``generation.generate_texts``)."""
    references = references_of(records)
    budget = max_new_tokens or answer_budget(tokenizer, [r["output"] for r in records])
    texts = generate_texts(model, tokenizer, [prompt_messages(r, system_prompt) for r in records], budget,
                           batch_size, progress, limit=limit, desc="evaluating", stop=stop, json_only=True)
    predictions = [parse_intent(t) for t in texts]
    metrics = compute_metrics(references, predictions)
    metrics["max_new_tokens"] = budget
    rows = [{"input": r["input"], "reference": ref, "prediction": text, **score(ref, pred).to_dict()}
            for r, ref, text, pred in zip(records, references, texts, predictions)]
    return metrics, rows


def write_results(output_dir: str | Path, metrics: dict, rows: Sequence[dict]) -> Path:
    """predictions.jsonl and metrics.json in ``output_dir``, each written whole or not at all."""
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in ((PREDICTIONS_FILE, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)),
                       (METRICS_FILE, json.dumps(metrics, indent=2, ensure_ascii=False) + "\n")):
        tmp = out / f".{name}.tmp"
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, out / name)
    return out


def evaluate_model(model_dir_or_adapter, records: str | Path | Sequence[dict], batch_size: int = 16,
                   max_new_tokens: int | None = None, load_in_4bit: bool = False, base_model: str | None = None,
                   output_dir: str | Path | None = None, system_prompt: str | None = None, limit: int | None = None,
                   progress: bool = True, dtype=None, stop=None, merge: bool = True) -> dict:
    """Load ``model_dir_or_adapter`` (adapter dir, merged dir, hub id, ``embedded:...``, or a ``LoadedModel``),
    generate on ``records`` (list, JSONL file, or dataset dir -> test.jsonl) and return the metrics dict;
    with ``output_dir``, also write predictions.jsonl and metrics.json there; ``dtype`` and ``merge`` (fold the
    adapter into the weights: faster, the same greedy answers up to float rounding) as in load_for_inference.
    ``stop`` (a ``stopping.SignalStop``): installed while generating; a first SIGTERM/SIGINT then raises
    ``stopping.StopRequested`` within a generate step, and nothing is written."""
    from ethsft.inference.loading import LoadedModel, load_for_inference

    records = checked_records(records, limit)  # a bad reference fails here, naming file and line, before loading
    loaded = (model_dir_or_adapter if isinstance(model_dir_or_adapter, LoadedModel)
              else load_for_inference(model_dir_or_adapter, load_in_4bit=load_in_4bit, base_model=base_model,
                                 dtype=dtype, merge=merge))
    system = system_prompt if system_prompt is not None else loaded.system_prompt
    started = time.perf_counter()
    with stop if stop is not None else contextlib.nullcontext():
        metrics, rows = evaluate_records(loaded.model, loaded.tokenizer, records, batch_size, max_new_tokens,
                                         system, progress, stop, loaded.limit)
    seconds = time.perf_counter() - started
    metrics.update(model=str(loaded.adapter or loaded.base_model), base_model=loaded.base_model,
                   adapter=loaded.adapter, batch_size=batch_size, seconds=round(seconds, 3),
                   samples_per_second=round(len(records) / seconds, 3) if seconds else None)
    if output_dir is not None:
        write_results(output_dir, metrics, rows)
    return metrics


__all__ = ["evaluate_model", "evaluate_records", "load_records", "write_results", "format_table"]
