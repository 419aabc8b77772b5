"""decoded.csv / .jsonl / .parquet -> train / validation / test instruction records.

Each kept transaction becomes one line of ``{"instruction", "input",
"output"}`` (``input``: compact JSON of the transaction as the model sees it,
see :func:`ethsft.eth.tx.model_input`; ``output``: compact JSON of its intent,
see :mod:`ethsft.eth.intent`).

Rules
-----
* **Split by content.** ``bucket = blake2b(input, key="ethsft-split:<seed>")``
  of the model input (the compact transaction JSON, stripped, lower-case) read
  as a fraction in [0, 1): ``< train`` -> train, ``< train+validation`` ->
  validation, else test.  Transactions with identical inputs (a bot's repeats,
  the same wallet re-approving the same router) always land in one split, so
  the test split never holds an input the model trained on; and an input
  lands in the same split for a given seed whatever else is in the file, so
  re-running on a superset keeps old rows where they were.
* **Duplicates** (a hash already kept) are dropped and counted.
* **Fatal errors** (:class:`~ethsft.data.records.DataError`, nothing written):
  missing file, unknown extension, empty file, no data rows, missing required
  column, unreadable CSV/Parquet, a split that is not three fractions in
  [0, 1] summing to 1, an output folder that cannot be created or written.
  Every row rejected is fatal too: only ``rejects.jsonl`` (the reasons) is
  written, no empty split.
* **Rejects** (per-row value problems; the run goes on): written to
  ``rejects.jsonl`` as ``{"row", "reason", "hash"}`` where the reason starts
  with the column (``"value: expected ..."``) or ``record:`` for whole-row
  problems (bad JSON line, wrong field count).
* **Accounting.** ``kept + duplicates + rejected == rows_read``, always.
* **Row numbers** are 1-based line numbers for CSV (the header is row 1; a
  record spanning several lines is numbered by its first line) and JSONL
  (blank lines are skipped and not counted as read), and the 1-based record
  index for Parquet.
* **Streaming**: rows are read one at a time (csv module, JSON per line,
  pyarrow ``iter_batches``); memory grows only with the set of kept hashes
  (an 8-byte digest each).  Outputs are written to temporary files in the
  output directory and moved into place (``os.replace``) only on success.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import os
import random
import sys
import time
from pathlib import Path
from typing import Iterator

from ethsft.data.records import INSTRUCTION, SPLITS, DataError
from ethsft.eth.errors import RowError
from ethsft.eth.intent import ACTIONS, label
from ethsft.eth.tx import REQUIRED, model_input, normalize

TOKEN_SAMPLE = 2000


# -- split -------------------------------------------------------------------

def check_split(split) -> tuple[float, float, float]:
    """Validate ``(train, validation, test)`` fractions; raises DataError."""
    try:
        values = tuple(float(x) for x in split)
    except (TypeError, ValueError):
        raise DataError(f"split must be three numbers (train validation test), got {split!r}") from None
    if len(values) != 3:
        raise DataError(f"split must be three numbers (train validation test), got {len(values)}")
    for name, v in zip(SPLITS, values):
        if not (0.0 <= v <= 1.0):
            raise DataError(f"split: the {name} fraction must be between 0 and 1, got {v:g}")
    if abs(sum(values) - 1.0) > 1e-6:
        shown = " + ".join(f"{v:g}" for v in values)
        raise DataError(f"split must sum to 1, got {shown} = {sum(values):g}")
    return values


def _split_key(seed: int) -> bytes:
    return f"ethsft-split:{seed}".encode()


def bucket(text: str, seed: int = 0) -> float:
    """The keyed-hash bucket in [0, 1) of ``text`` (a model input; stripped and lower-cased first)."""
    d = hashlib.blake2b(text.strip().lower().encode(), digest_size=8, key=_split_key(seed)).digest()
    return int.from_bytes(d, "big") / 2**64


def split_of(model_input: str, seed: int = 0, split=(0.7, 0.15, 0.15)) -> str:
    """Which split a transaction goes to, by its model input (the record's ``input``)."""
    b = bucket(model_input, seed)
    if b < split[0]:
        return "train"
    if b < split[0] + split[1]:
        return "validation"
    return "test"


# -- readers: yield (row_number, dict | None, reject reason | None) ------------

def _missing(columns) -> list[str]:
    return [c for c in REQUIRED if c not in columns]


def _fmt_missing(missing) -> str:
    return ", ".join(repr(c) for c in missing)


def _utf8_lines(f, path: str):
    """The lines of binary ``f`` decoded one by one, so that a bad byte is reported on its own line."""
    for number, raw in enumerate(f, start=1):
        try:
            yield raw.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as e:
            raise DataError(f"{path}: line {number}: not UTF-8 text (byte {raw[e.start:e.start + 1]!r} at column "
                            f"{e.start + 1}); re-encode the file as UTF-8") from None


def _delimiter_hint(header: list[str]) -> str:
    """A header read as one column that holds another separator: the file is not comma-separated."""
    if len(header) == 1:
        for sep, name in ((";", "semicolon"), ("\t", "tab"), ("|", "pipe")):
            if sep in header[0]:
                return (f"; the header looks {name}-separated, and prepare reads comma-separated CSV (ethereum-etl's "
                        "format): convert it, e.g. with pandas.read_csv(path, sep=...).to_csv(...)")
    return ""


def _read_csv(path: str) -> Iterator[tuple[int, dict | None, str | None]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # calldata can be long
    with open(path, "rb") as f:
        reader = csv.reader(_utf8_lines(f, path), strict=True)  # broken quoting is fatal: row boundaries unknown
        try:
            header = next(reader, None)
            if header is None or not any(h.strip() for h in header):
                raise DataError(f"{path}: empty file (no header row)")
            header = [h.strip() for h in header]
            missing = _missing(header)
            if missing:
                raise DataError(f"{path}: row 1: missing required column(s) {_fmt_missing(missing)}"
                                + _delimiter_hint(header))
            width = len(header)
            prev = reader.line_num
            for fields in reader:
                row_no = prev + 1
                prev = reader.line_num
                if len(fields) != width:
                    if not fields:  # a blank line
                        continue
                    yield row_no, None, f"record: {len(fields)} fields, the header has {width}"
                    continue
                yield row_no, dict(zip(header, fields)), None
        except csv.Error as e:
            raise DataError(f"{path}: row {reader.line_num}: unreadable CSV ({e})") from None


def _read_jsonl(path: str) -> Iterator[tuple[int, dict | None, str | None]]:
    first = True
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, 1):
            if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
                raw = raw[3:]
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                yield line_no, None, f"record: not UTF-8 text ({e.reason})"
                continue
            except ValueError as e:
                yield line_no, None, f"record: invalid JSON ({e})"
                continue
            if not isinstance(obj, dict):
                yield line_no, None, f"record: expected a JSON object, got {type(obj).__name__}"
                continue
            missing = _missing(obj)
            if missing:
                if first:  # the first record plays the header's role: structural
                    raise DataError(f"{path}: row {line_no}: missing required column(s) {_fmt_missing(missing)}")
                yield line_no, None, f"record: missing required column(s) {_fmt_missing(missing)}"
                continue
            first = False
            yield line_no, obj, None


def _read_parquet(path: str) -> Iterator[tuple[int, dict | None, str | None]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None
    names = pf.schema_arrow.names
    missing = _missing(names)
    if missing:
        raise DataError(f"{path}: missing required column(s) {_fmt_missing(missing)} (Parquet schema)")
    used = [c for c in names if c in _USED]
    n = 0
    for batch in pf.iter_batches(batch_size=4096, columns=used):
        for row in batch.to_pylist():
            n += 1
            yield n, row, None


_USED = set(REQUIRED) | {"receipt_contract_address", "function_signature", "decoded_input", "token_transfers"}
_READERS = {".csv": _read_csv, ".jsonl": _read_jsonl, ".parquet": _read_parquet}


def _open_reader(path: str):
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    if ext not in _READERS:
        raise DataError(f"{path}: unsupported format {ext or '(none)'!r} (use .csv, .jsonl or .parquet)")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: empty file (no header row)" if ext == ".csv" else f"{path}: empty file")
    return ext, _READERS[ext](path)


# -- token statistics --------------------------------------------------------

def token_stats(pairs: list[tuple[str, str]]) -> dict:
    """Mean / p95 prompt and completion lengths in Mistral (v1) tokens.

    Prompt = the instruction, a blank line and the input as one v1 user turn
    (``<s>[INST] ... [/INST]``); completion = the output plus ``</s>``.
    Returns ``{"skipped": reason}`` when mistral-common (with sentencepiece)
    is not available."""
    if not pairs:
        return {"skipped": "no records"}
    try:
        from mistral_common.protocol.instruct.messages import UserMessage
        from mistral_common.protocol.instruct.request import ChatCompletionRequest
        from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

        mt = MistralTokenizer.v1()
    except Exception as e:  # ImportError, or sentencepiece missing
        return {"skipped": f"mistral-common tokenizer unavailable ({type(e).__name__})"}
    raw = mt.instruct_tokenizer.tokenizer
    prompt, completion = [], []
    for p, c in pairs:
        req = ChatCompletionRequest(messages=[UserMessage(content=p)])
        prompt.append(len(mt.encode_chat_completion(req).tokens))
        completion.append(len(raw.encode(c, bos=False, eos=True)))

    def stat(xs):
        xs = sorted(xs)
        return {"mean": round(sum(xs) / len(xs), 1), "p95": xs[math.ceil(0.95 * len(xs)) - 1], "max": xs[-1]}

    return {"tokenizer": "mistral v1 (mistral-common)", "sample": len(pairs),
            "prompt": stat(prompt), "completion": stat(completion)}


# -- prepare -----------------------------------------------------------------

def prepare(input_path, output_dir, split=(0.7, 0.15, 0.15), seed: int = 0, progress: bool = True,
            count_tokens: bool = True) -> dict:
    """Label, split and write ``train/validation/test.jsonl`` + ``rejects.jsonl``
    + ``prepare_summary.json`` into ``output_dir``; returns the summary dict.

    Raises :class:`~ethsft.data.records.DataError` for structural problems."""
    split = check_split(split)
    path = os.fspath(input_path)
    out = os.fspath(output_dir)
    ext, rows = _open_reader(path)
    _check_output(path, out)
    created = not os.path.isdir(out)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise _unwritable(out, e) from None
    start = time.perf_counter()
    names = SPLITS + ("rejects",)
    tmp = {n: os.path.join(out, f".{n}.jsonl.{os.getpid()}.tmp") for n in names + ("prepare_summary",)}
    files: dict = {}
    try:
        try:
            for n in names:
                files[n] = open(tmp[n], "w", encoding="utf-8", newline="\n", buffering=1 << 20)
            summary = _run(path, rows, files, split, seed, progress, count_tokens)
            for f in files.values():
                f.close()
        except OSError as e:
            raise (_unwritable(out, e) if e.filename is None or os.fspath(e.filename) != path else e) from None
        if summary["kept"] == 0:  # every row rejected: the reasons are kept, no empty splits are written
            os.replace(tmp["rejects"], os.path.join(out, "rejects.jsonl"))
            by_column = ", ".join(f"{k} {v}" for k, v in summary["rejected_by_column"].items())
            raise DataError(f"{path}: all {summary['rows_read']} rows were rejected (by column: {by_column}), so no "
                            f"split was written; the reason for each row is in {os.path.join(out, 'rejects.jsonl')}")
        seconds = time.perf_counter() - start  # reading, labelling, writing (token counting excluded)
        sample = summary.pop("_sample")
        t0 = time.perf_counter()
        tokens = token_stats(sample) if count_tokens else {"skipped": "disabled"}
        if "prompt" in tokens:
            tokens["seconds"] = round(time.perf_counter() - t0, 3)
        summary = {
            "input": path, "format": ext[1:], "output_dir": out, "seed": seed,
            "split": dict(zip(SPLITS, split)), **summary,
            "seconds": round(seconds, 3),
            "rows_per_second": round(summary["rows_read"] / seconds) if seconds > 0 else None,
            "tokens": tokens,
            "files": {n: f"{n}.jsonl" for n in names},
        }
        try:
            with open(tmp["prepare_summary"], "w", encoding="utf-8") as f:
                json.dump(summary, f, indent=2)
                f.write("\n")
            for n in names:  # every file is complete before the first one moves into place
                os.replace(tmp[n], os.path.join(out, f"{n}.jsonl"))
            os.replace(tmp["prepare_summary"], os.path.join(out, "prepare_summary.json"))
        except OSError as e:
            raise _unwritable(out, e) from None
    except BaseException:
        for f in files.values():
            f.close()
        for t in tmp.values():
            if os.path.exists(t):
                os.unlink(t)
        if created and os.path.isdir(out) and not os.listdir(out):
            os.rmdir(out)
        raise
    return summary


def _check_output(path: str, out: str) -> None:
    """Refuse an output folder that holds the input, or files of the names prepare writes that an earlier
    `ethsft prepare` did not write (its prepare_summary.json, or rejects.jsonl's own lines, say it did)."""
    if not os.path.isdir(out):
        return
    if Path(path).resolve().parent == Path(out).resolve():
        raise DataError(f"--output {out} holds the input {path}; write the dataset to another folder (prepare "
                        "writes train/validation/test.jsonl there)")
    summary = Path(out) / "prepare_summary.json"
    try:
        ours = "splits" in json.loads(summary.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        ours = False
    for name in (*SPLITS, "rejects", "prepare_summary"):
        target = Path(out) / (f"{name}.json" if name == "prepare_summary" else f"{name}.jsonl")
        if target.exists() and not ours and not (name == "rejects" and _is_rejects_file(target)):
            raise DataError(f"--output {out} already holds {target.name}, which `ethsft prepare` did not write "
                            "(no prepare_summary.json beside it); choose another folder or move it away")


def _is_rejects_file(path: Path) -> bool:
    """rejects.jsonl as prepare writes it: {"row", "reason", "hash"} lines."""
    try:
        with path.open(encoding="utf-8") as fh:
            first = json.loads(fh.readline())
    except (OSError, ValueError):
        return False
    return isinstance(first, dict) and set(first) == {"row", "reason", "hash"}


def _unwritable(out: str, e: OSError) -> DataError:
    """The output folder cannot be created or written: one line naming it and why."""
    reason = e.strerror or type(e).__name__
    file = next((q for q in Path(out).parents if q.exists() and not q.is_dir()), None)
    if file is not None:  # --output under a file: the OS says "Not a directory" or "File exists"
        reason = f"{file} is a file"
    return DataError(f"cannot write the output folder {out} ({reason}); nothing was written")


def _run(path, rows, files, split, seed, progress, count_tokens) -> dict:
    from tqdm import tqdm

    key = _split_key(seed)
    blake2b = hashlib.blake2b
    t_train, t_val = split[0] * 2**64, (split[0] + split[1]) * 2**64
    seen: set[int] = set()
    read = duplicates = rejected = 0
    per_split = dict.fromkeys(SPLITS, 0)
    by_split = {s: dict.fromkeys(ACTIONS, 0) for s in SPLITS}
    reasons: dict[str, int] = {}
    sample: list[tuple[str, str]] = []
    rng = random.Random(seed)
    w_train, w_val, w_test, w_rej = (files[n].write for n in ("train", "validation", "test", "rejects"))
    writers = {"train": w_train, "validation": w_val, "test": w_test}
    instr_json = json.dumps(INSTRUCTION)
    compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
    quote = json.JSONEncoder(ensure_ascii=False).encode  # a str -> its JSON string literal
    bar = tqdm(desc="prepare", unit=" rows", disable=not progress, mininterval=0.5, file=sys.stderr)

    def reject(row_no, reason, tx_hash):
        nonlocal rejected
        rejected += 1
        where = reason.split(":", 1)[0]
        reasons[where] = reasons.get(where, 0) + 1
        w_rej(json.dumps({"row": row_no, "reason": reason, "hash": tx_hash}, ensure_ascii=False) + "\n")

    try:
        for row_no, row, err in rows:
            read += 1
            if not read & 1023:
                bar.update(1024)
            if err is not None:
                reject(row_no, err, None)
                continue
            h = row.get("hash")
            hs = h.strip().lower() if isinstance(h, str) else None
            k = int.from_bytes(blake2b(hs.encode(), digest_size=8, key=key).digest(), "big") if hs else None
            if k is not None and k in seen:
                duplicates += 1
                continue
            try:
                tx = normalize(row)
                intent = label(tx)
                inp = compact(model_input(tx))
            except RowError as e:
                reject(row_no, str(e), h if isinstance(h, str) else None)
                continue
            except Exception as e:  # a bug must not lose a row silently
                reject(row_no, f"record: internal error {type(e).__name__}: {e}", h if isinstance(h, str) else None)
                continue
            seen.add(k)
            ks = int.from_bytes(blake2b(inp.strip().lower().encode(), digest_size=8, key=key).digest(), "big")
            s = "train" if ks < t_train else ("validation" if ks < t_val else "test")
            out = compact(intent)  # label() builds keys in KEY_ORDER already (tested)
            writers[s]('{"instruction":' + instr_json + ',"input":' + quote(inp) + ',"output":' + quote(out) + "}\n")
            per_split[s] += 1
            by_split[s][intent["action"]] += 1
            if count_tokens:
                n_kept = len(seen)
                if n_kept <= TOKEN_SAMPLE:
                    sample.append((INSTRUCTION + "\n\n" + inp, out))
                else:
                    j = rng.randrange(n_kept)
                    if j < TOKEN_SAMPLE:
                        sample[j] = (INSTRUCTION + "\n\n" + inp, out)
    finally:
        bar.update(read % 1024)
        bar.close()
    if read == 0:
        raise DataError(f"{path}: no data rows")
    kept = len(seen)
    assert kept + duplicates + rejected == read, "row accounting broken"
    return {
        "rows_read": read, "kept": kept, "duplicates": duplicates, "rejected": rejected,
        "splits": per_split,
        "actions": {a: sum(by_split[s][a] for s in SPLITS) for a in ACTIONS},
        "actions_by_split": by_split,
        "rejected_by_column": dict(sorted(reasons.items())),
        "_sample": sample,
    }


def format_summary(summary: dict) -> str:
    """Human-readable summary for the CLI."""
    lines = [
        f"read {summary['rows_read']} rows from {summary['input']}: kept {summary['kept']}, "
        f"duplicates {summary['duplicates']}, rejected {summary['rejected']}",
        "splits: " + ", ".join(f"{k} {v}" for k, v in summary["splits"].items()),
        "actions: " + ", ".join(f"{k} {v}" for k, v in summary["actions"].items() if v),
    ]
    if summary["rejected"]:
        lines.append("rejected by column: " + ", ".join(f"{k} {v}" for k, v in summary["rejected_by_column"].items())
                     + f" (see {os.path.join(summary['output_dir'], 'rejects.jsonl')})")
    t = summary.get("tokens") or {}
    if "prompt" in t:
        lines.append(
            f"tokens ({t['tokenizer']}, sample of {t['sample']}): prompt mean {t['prompt']['mean']} / p95 "
            f"{t['prompt']['p95']}, completion mean {t['completion']['mean']} / p95 {t['completion']['p95']}"
        )
    elif "skipped" in t:
        lines.append(f"tokens: skipped ({t['skipped']})")
    lines.append(f"{summary['seconds']} s, {summary['rows_per_second']} rows/s; wrote "
                 f"{os.path.join(summary['output_dir'], 'prepare_summary.json')}")
    return "\n".join(lines)
