"""ethereum-etl's ``transactions``, ``receipts`` and (optionally) ``token_transfers`` exports joined by
transaction hash into rows of the ``decoded.csv`` schema (:mod:`.tx`), so ``prepare`` reads them as it
reads a pre-joined file.

Columns are ethereum-etl's own (``export_blocks_and_transactions``, ``export_receipts_and_logs``,
``extract_token_transfers``; .csv, .jsonl or .parquet):

* transactions: ``hash, block_number, from_address, to_address, value, input`` (others ignored);
* receipts: ``transaction_hash, status`` (and ``contract_address``, ``gas_used`` when present);
* token_transfers: ``transaction_hash, token_address, from_address, to_address, value`` (ordered by
  ``log_index`` when present, else by file order).

Receipts and token transfers are read into memory keyed by hash (a few dozen bytes a transaction); the
transactions stream. A transaction without a receipt is rejected (reason ``receipt: ...``) and counted
in ``missing_receipts``; receipts or transfers of transactions not in the export are ignored. A
malformed receipts / token_transfers record is fatal: the join would be silently wrong.
"""

from __future__ import annotations

from typing import Iterator

from ethsft.data.records import DataError
from ethsft.eth.readers import open_reader

TRANSACTION_COLUMNS = ("hash", "block_number", "from_address", "to_address", "value", "input")
RECEIPT_COLUMNS = ("transaction_hash", "status")
TRANSFER_COLUMNS = ("transaction_hash", "token_address", "from_address", "to_address", "value")


def _key(h) -> str | None:
    return h.strip().lower() if isinstance(h, str) else None


def _each(path: str, required) -> Iterator[tuple[int, dict]]:
    _, rows = open_reader(path, required)
    for row_no, row, err in rows:
        if err is not None:
            raise DataError(f"{path}: row {row_no}: {err}")
        yield row_no, row


def _receipts(path: str) -> dict:
    out = {}
    for _, r in _each(path, RECEIPT_COLUMNS):
        out[_key(r["transaction_hash"])] = (r["status"], r.get("contract_address"), r.get("gas_used"))
    return out


def _log_index(v) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return 0


def _transfers(path: str) -> dict:
    out: dict = {}
    for n, t in _each(path, TRANSFER_COLUMNS):
        item = {"token_address": t["token_address"], "from_address": t["from_address"],
                "to_address": t["to_address"], "value": t["value"]}
        out.setdefault(_key(t["transaction_hash"]), []).append((_log_index(t.get("log_index", n)), n, item))
    return {h: [item for _, _, item in sorted(items, key=lambda x: x[:2])] for h, items in out.items()}


def joined_rows(transactions, receipts, token_transfers=None, stats: dict | None = None):
    """``(extension, rows)`` like :func:`ethsft.eth.readers.open_reader` over the joined exports;
    ``stats["missing_receipts"]`` counts the transactions rejected for lack of a receipt."""
    by_hash = _receipts(receipts)
    moves = _transfers(token_transfers) if token_transfers else None
    ext, rows = open_reader(transactions, TRANSACTION_COLUMNS)
    stats = {} if stats is None else stats
    stats["missing_receipts"] = 0

    def gen():
        for row_no, row, err in rows:
            if err is not None:
                yield row_no, None, err
                continue
            h = _key(row.get("hash"))
            receipt = by_hash.get(h)
            if receipt is None:
                stats["missing_receipts"] += 1
                yield row_no, None, f"receipt: no receipt for this transaction in {receipts}"
                continue
            status, created, gas_used = receipt
            joined = dict(row, receipt_status=status, receipt_contract_address=created, receipt_gas_used=gas_used)
            if moves is not None:
                joined["token_transfers"] = moves.get(h, [])
            yield row_no, joined, None

    return ext, gen()
