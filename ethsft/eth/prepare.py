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
  index for Parquet (:mod:`ethsft.eth.readers`).
* **Streaming**: rows are read one at a time (csv module, JSON per line,
  pyarrow ``iter_batches``); memory grows only with the set of kept hashes
  (an 8-byte digest each), and, for ethereum-etl exports joined here
  (:mod:`ethsft.eth.etl_join`), with their receipts and token transfers.  Outputs are written to temporary files in the
  output directory and moved into place (``os.replace``) only on success.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import sys
import time
from pathlib import Path

from ethsft.data.records import INSTRUCTION, SPLITS, DataError
from ethsft.eth.abi import user_functions
from ethsft.eth.errors import RowError
from ethsft.eth.etl_join import joined_rows
from ethsft.eth.intent import ACTIONS, label
from ethsft.eth.readers import open_reader
from ethsft.eth.registry import user_tokens
from ethsft.eth.tx import model_input, normalize
from ethsft.eth.user_data import load_abis, load_tokens
from ethsft.filenames import PREPARE_SUMMARY_FILE, REJECTS_FILE

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
            count_tokens: bool = True, *, transactions=None, receipts=None, token_transfers=None, abi=None,
            tokens=None) -> dict:
    """Label, split and write ``train/validation/test.jsonl`` + ``rejects.jsonl``
    + ``prepare_summary.json`` into ``output_dir``; returns the summary dict.

    The input is ``input_path`` (a pre-joined decoded.csv / .jsonl / .parquet), or, with
    ``input_path`` None, ethereum-etl's ``transactions`` and ``receipts`` exports (and optionally
    ``token_transfers``) joined by hash (:mod:`ethsft.eth.etl_join`). ``abi`` / ``tokens``: a user's
    ABIs and token list (:mod:`ethsft.eth.user_data`), read before any row.

    Raises :class:`~ethsft.data.records.DataError` for structural problems."""
    split = check_split(split)
    out = os.fspath(output_dir)
    user_abis = load_abis(abi) if abi is not None else {}
    user_list = load_tokens(tokens) if tokens is not None else {}
    join: dict | None = None
    if input_path is not None:
        if transactions is not None or receipts is not None or token_transfers is not None:
            raise DataError("give either a pre-joined input or the transactions and receipts exports, not both")
        path = os.fspath(input_path)
        ext, rows = open_reader(path)
    else:
        if transactions is None or receipts is None:
            raise DataError("the ethereum-etl join needs both the transactions and the receipts exports")
        path = os.fspath(transactions)
        join = {}
        ext, rows = joined_rows(path, os.fspath(receipts),
                                None if token_transfers is None else os.fspath(token_transfers), join)
    for given in (input_path, transactions, receipts, token_transfers):
        if given is not None:
            _check_output(os.fspath(given), out)
    created = not os.path.isdir(out)
    try:
        os.makedirs(out, exist_ok=True)
    except OSError as e:
        raise _unwritable(out, e) from None
    start = time.perf_counter()
    names = SPLITS + ("rejects",)  # written as <name>.jsonl: rejects.jsonl is REJECTS_FILE
    tmp = {n: os.path.join(out, f".{n}.jsonl.{os.getpid()}.tmp") for n in names + ("prepare_summary",)}
    files: dict = {}
    try:
        try:
            for n in names:
                files[n] = open(tmp[n], "w", encoding="utf-8", newline="\n", buffering=1 << 20)
            with user_functions(user_abis), user_tokens(user_list):
                summary = _run(path, rows, files, split, seed, progress, count_tokens)
            for f in files.values():
                f.close()
        except OSError as e:
            raise (_unwritable(out, e) if e.filename is None or os.fspath(e.filename) != path else e) from None
        if summary["kept"] == 0:  # every row rejected: the reasons are kept, no empty splits are written
            os.replace(tmp["rejects"], os.path.join(out, REJECTS_FILE))
            by_column = ", ".join(f"{k} {v}" for k, v in summary["rejected_by_column"].items())
            raise DataError(f"{path}: all {summary['rows_read']} rows were rejected (by column: {by_column}), so no "
                            f"split was written; the reason for each row is in {os.path.join(out, REJECTS_FILE)}")
        seconds = time.perf_counter() - start  # reading, labelling, writing (token counting excluded)
        sample = summary.pop("_sample")
        t0 = time.perf_counter()
        lengths = token_stats(sample) if count_tokens else {"skipped": "disabled"}
        if "prompt" in lengths:
            lengths["seconds"] = round(time.perf_counter() - t0, 3)
        extra: dict = {}
        if join is not None:
            extra["joined"] = {"transactions": path, "receipts": os.fspath(receipts),
                               "token_transfers": None if token_transfers is None else os.fspath(token_transfers),
                               "missing_receipts": join["missing_receipts"]}
        if abi is not None:
            extra["abi"] = {"path": os.fspath(abi), "contracts": len(user_abis),
                            "functions": sum(len(v) for v in user_abis.values())}
        if tokens is not None:
            extra["token_list"] = {"path": os.fspath(tokens), "tokens": len(user_list)}
        summary = {
            "input": path, "format": ext[1:], "output_dir": out, "seed": seed,
            "split": dict(zip(SPLITS, split)), **extra, **summary,
            "seconds": round(seconds, 3),
            "rows_per_second": round(summary["rows_read"] / seconds) if seconds > 0 else None,
            "tokens": lengths,
            "files": {n: f"{n}.jsonl" for n in names},
        }
        try:
            with open(tmp["prepare_summary"], "w", encoding="utf-8") as f:
                json.dump(summary, f, indent=2)
                f.write("\n")
            for n in names:  # every file is complete before the first one moves into place
                os.replace(tmp[n], os.path.join(out, f"{n}.jsonl"))
            os.replace(tmp["prepare_summary"], os.path.join(out, PREPARE_SUMMARY_FILE))
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
    summary = Path(out) / PREPARE_SUMMARY_FILE
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
    ]
    if "joined" in summary:
        j = summary["joined"]
        lines.append(f"joined with {j['receipts']}" + (f" and {j['token_transfers']}" if j["token_transfers"] else "")
                     + f": {j['missing_receipts']} transaction(s) without a receipt (rejected)")
    if "abi" in summary:
        lines.append(f"user ABIs: {summary['abi']['functions']} function(s) of {summary['abi']['contracts']} "
                     f"contract(s) from {summary['abi']['path']}")
    if "token_list" in summary:
        lines.append(f"user tokens: {summary['token_list']['tokens']} from {summary['token_list']['path']}")
    lines += [
        "splits: " + ", ".join(f"{k} {v}" for k, v in summary["splits"].items()),
        "actions: " + ", ".join(f"{k} {v}" for k, v in summary["actions"].items() if v),
    ]
    if summary["rejected"]:
        lines.append("rejected by column: " + ", ".join(f"{k} {v}" for k, v in summary["rejected_by_column"].items())
                     + f" (see {os.path.join(summary['output_dir'], REJECTS_FILE)})")
    t = summary.get("tokens") or {}
    if "prompt" in t:
        lines.append(
            f"tokens ({t['tokenizer']}, sample of {t['sample']}): prompt mean {t['prompt']['mean']} / p95 "
            f"{t['prompt']['p95']}, completion mean {t['completion']['mean']} / p95 {t['completion']['p95']}"
        )
    elif "skipped" in t:
        lines.append(f"tokens: skipped ({t['skipped']})")
    lines.append(f"{summary['seconds']} s, {summary['rows_per_second']} rows/s; wrote "
                 f"{os.path.join(summary['output_dir'], PREPARE_SUMMARY_FILE)}")
    return "\n".join(lines)
