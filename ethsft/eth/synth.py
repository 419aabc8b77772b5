"""Synthetic but realistic ``decoded.csv`` rows for demos, tests and benchmarks.

Real token contracts and decimals (bundled registry), real selectors, calldata
encoded with eth-abi, token_transfers that match the call, a mix of actions
close to today's mainnet (``mix="default"``: transfers, Universal Router and
aggregator swaps, Permit2, staking, lending, NFT purchases; see ``KINDS`` in
:mod:`ethsft.eth.synth_draws` for the weights and where they come from; the
first mix, V2 / V3 routers only, is ``mix="legacy"``), a few failed
transactions and contract creations, and users that recur (a skewed draw from
a pool).  About
40% of the rows carry ``function_signature`` / ``decoded_input``; the rest only
raw ``input``.

Each generated row also carries, under keys starting with ``_`` (never
written to files), what the generator meant:

* ``_kind``: the generator's scenario name,
* ``_expected``: the intent, built here from the generator's own choices
  (amounts via :mod:`decimal`, independently of :mod:`ethsft.eth.intent`),
* ``_expected_raw``: the intent expected when the decoded columns are dropped
  (differs only for unknown selectors: the function is then the 0x-selector).
"""

from __future__ import annotations

import csv
import json
import os
from typing import Iterable, Iterator

from ethsft.eth.synth_defi import DefiScenarios
from ethsft.eth.synth_dex import DexScenarios
from ethsft.eth.synth_draws import MIXES  # noqa: F401 - the named mixes (``mix``), part of this API
from ethsft.eth.synth_transfers import TransferScenarios
from ethsft.eth.tx import COLUMNS


class _Gen(TransferScenarios, DexScenarios, DefiScenarios):
    """Every scenario of ``KINDS`` (``ethsft.eth.synth_draws``); ``row`` draws one and fills a row with it."""

    def row(self) -> dict:
        rng = self.rng
        if rng.random() < 0.08:
            self.block += 1
            self.ts += 12
        kind = rng.choices(self.kinds, self.kind_w)[0]
        sender = self.user()
        failed = rng.random() < (0.01 if kind == "native_transfer" else 0.035)
        # include token_transfers on most successful rows (what an ethereum-etl join gives)
        with_tt = not failed and rng.random() < 0.85
        r = {
            "hash": "0x%064x" % rng.getrandbits(256),
            "block_number": self.block,
            "block_timestamp": self.ts,
            "from_address": sender,
            "to_address": "",
            "value": 0,
            "gas": 21000,
            "gas_price": rng.randint(5, 80) * 10**9 + rng.randrange(10**9),
            "input": "0x",
            "receipt_status": 0 if failed else 1,
            "receipt_gas_used": 21000,
            "receipt_contract_address": "",
            "function_signature": "",
            "decoded_input": "",
            "token_transfers": "",
        }
        ctx = {"sender": sender, "failed": failed, "with_tt": with_tt, "transfers": []}
        exp = getattr(self, "_" + kind)(r, ctx)
        if kind not in ("native_transfer", "contract_creation"):
            gas = rng.randint(45_000, 350_000)
            r["gas"] = gas
            r["receipt_gas_used"] = gas if failed else rng.randint(gas // 2, gas)
        if with_tt and kind not in ("native_transfer",):
            r["token_transfers"] = json.dumps(
                [dict(token_address=t, from_address=f, to_address=to, value=str(v),
                      **({} if tid is None else {"token_id": str(tid)}))
                 for t, f, to, v, tid in ctx["transfers"]], separators=(",", ":"))
        elif failed and rng.random() < 0.5:
            r["token_transfers"] = "[]"
        exp["status"] = "failed" if failed else "success"
        r["value"] = str(r["value"])
        r["_kind"] = kind
        r["_expected"] = exp
        raw = ctx.get("expected_raw")
        if raw is not None:
            raw["status"] = exp["status"]
        r["_expected_raw"] = raw if raw is not None else exp
        return r


def generate_rows(n: int, seed: int = 0, mix: str = "default") -> Iterator[dict]:
    """``n`` synthetic rows in the decoded.csv schema (see module docstring),
    deterministic for a given ``seed`` and ``mix`` (a key of MIXES)."""
    g = _Gen(n, seed, mix)
    for _ in range(n):
        yield g.row()


def _cell(v) -> str:
    if v is None:
        return ""
    if isinstance(v, (dict, list)):
        return json.dumps(v, separators=(",", ":"))
    return str(v)


def write_rows(path, rows: Iterable[dict]) -> int:
    """Write rows (decoded.csv columns only; ``_`` keys dropped) to ``path``:
    .csv, .jsonl or .parquet by extension.  Streams; returns the row count.

    JSONL: ``block_number`` / ``block_timestamp`` / ``receipt_status`` and gas
    fields as JSON numbers, ``value`` as a string (wei exceeds 2**53),
    ``decoded_input`` as an object and ``token_transfers`` as a list.
    Parquet: integer columns int64, everything else string (JSON text)."""
    path = os.fspath(path)
    ext = os.path.splitext(path)[1].lower()
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    n = 0
    if ext == ".csv":
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(COLUMNS)
            for r in rows:
                w.writerow([_cell(r.get(c)) for c in COLUMNS])
                n += 1
    elif ext == ".jsonl":
        with open(path, "w", encoding="utf-8") as f:
            for r in rows:
                d = {}
                for c in COLUMNS:
                    v = r.get(c)
                    if c in ("decoded_input", "token_transfers"):
                        v = json.loads(v) if isinstance(v, str) and v else (v or None)
                    elif c in _INT_COLUMNS:
                        v = int(v) if v not in (None, "") else None
                    else:
                        v = None if v in (None, "") else str(v)
                    d[c] = v
                f.write(json.dumps(d, separators=(",", ":")) + "\n")
                n += 1
    elif ext == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.schema([(c, pa.int64() if c in _INT_COLUMNS else pa.string()) for c in COLUMNS])
        with pq.ParquetWriter(path, schema) as w:
            batch: list[dict] = []

            def flush():
                cols = {c: [] for c in COLUMNS}
                for r in batch:
                    for c in COLUMNS:
                        v = r.get(c)
                        if c in _INT_COLUMNS:
                            cols[c].append(None if v in (None, "") else int(v))
                        else:
                            cols[c].append(None if v in (None, "") else _cell(v))
                w.write_table(pa.table(cols, schema=schema))
                batch.clear()

            for r in rows:
                batch.append(r)
                n += 1
                if len(batch) >= 50_000:
                    flush()
            if batch or n == 0:
                flush()
    else:
        raise ValueError(f"{path}: unsupported format {ext!r} (use .csv, .jsonl or .parquet)")
    return n


_INT_COLUMNS = ("block_number", "block_timestamp", "gas", "gas_price", "receipt_status", "receipt_gas_used")
