"""Row readers of ``prepare``: CSV, JSONL and Parquet files as ``(row_number, dict | None, reject reason |
None)``, one row at a time (csv module, one JSON line at a time, pyarrow ``iter_batches``).

Row numbers are 1-based line numbers for CSV (the header is row 1; a record spanning several lines is
numbered by its first line) and JSONL (blank lines are skipped), the 1-based record index for Parquet.
A missing required column is fatal (:class:`~ethsft.data.records.DataError`); a malformed record is a
reject reason starting with ``record:``.
"""

from __future__ import annotations

import csv
import json
import os
import sys
from typing import Iterator

from ethsft.data.records import DataError
from ethsft.eth.tx import REQUIRED


def _missing(columns, required) -> list[str]:
    return [c for c in required if c not in columns]


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


def _read_csv(path: str, required) -> Iterator[tuple[int, dict | None, str | None]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))  # calldata can be long
    with open(path, "rb") as f:
        reader = csv.reader(_utf8_lines(f, path), strict=True)  # broken quoting is fatal: row boundaries unknown
        try:
            header = next(reader, None)
            if header is None or not any(h.strip() for h in header):
                raise DataError(f"{path}: empty file (no header row)")
            header = [h.strip() for h in header]
            missing = _missing(header, required)
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


def _read_jsonl(path: str, required) -> Iterator[tuple[int, dict | None, str | None]]:
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
            missing = _missing(obj, required)
            if missing:
                if first:  # the first record plays the header's role: structural
                    raise DataError(f"{path}: row {line_no}: missing required column(s) {_fmt_missing(missing)}")
                yield line_no, None, f"record: missing required column(s) {_fmt_missing(missing)}"
                continue
            first = False
            yield line_no, obj, None


def _read_parquet(path: str, required) -> Iterator[tuple[int, dict | None, str | None]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises ArrowInvalid / OSError
        raise DataError(f"{path}: not a readable Parquet file ({e})") from None
    names = pf.schema_arrow.names
    missing = _missing(names, required)
    if missing:
        raise DataError(f"{path}: missing required column(s) {_fmt_missing(missing)} (Parquet schema)")
    used = [c for c in names if c in _USED or c in required]
    n = 0
    for batch in pf.iter_batches(batch_size=4096, columns=used):
        for row in batch.to_pylist():
            n += 1
            yield n, row, None


_USED = set(REQUIRED) | {"receipt_contract_address", "function_signature", "decoded_input", "token_transfers"}
_READERS = {".csv": _read_csv, ".jsonl": _read_jsonl, ".parquet": _read_parquet}


def open_reader(path: str, required=REQUIRED):
    """``(extension, rows)`` of a .csv / .jsonl / .parquet file whose header (CSV), first record (JSONL)
    or schema (Parquet) has the ``required`` columns; rows are ``(row_number, dict | None, reject
    reason | None)``. Raises DataError for a missing, empty or unsupported file."""
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    ext = os.path.splitext(path)[1].lower()
    if ext not in _READERS:
        raise DataError(f"{path}: unsupported format {ext or '(none)'!r} (use .csv, .jsonl or .parquet)")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: empty file (no header row)" if ext == ".csv" else f"{path}: empty file")
    return ext, _READERS[ext](path, required)
