"""prepare --transactions --receipts --token-transfers: ethereum-etl-shaped exports give the same records
as the pre-joined file, and transactions without a receipt are counted and rejected."""

import csv
import hashlib
import json
import os

import pytest
from click.testing import CliRunner

from ethsft.cli.data import prepare as prepare_cmd
from ethsft.eth.prepare import prepare
from ethsft.eth.synth import generate_rows, write_rows

# ethereum-etl's export columns (export_blocks_and_transactions, export_receipts_and_logs, extract_token_transfers)
TX_COLS = ["hash", "nonce", "block_hash", "block_number", "transaction_index", "from_address", "to_address", "value",
           "gas", "gas_price", "input", "block_timestamp", "max_fee_per_gas", "max_priority_fee_per_gas",
           "transaction_type"]
RECEIPT_COLS = ["transaction_hash", "transaction_index", "block_hash", "block_number", "cumulative_gas_used",
                "gas_used", "contract_address", "root", "status", "effective_gas_price"]
TT_COLS = ["token_address", "from_address", "to_address", "value", "transaction_hash", "log_index", "block_number"]


def etl_exports(rows, folder, drop_receipts=()):
    """The rows as ethereum-etl would export them, and the pre-joined rows that carry the same information
    (etl has no decoded columns, and an ERC-721 transfer's token id is its value)."""
    txs, receipts, moves, joined = [], [], [], []
    for i, r in enumerate(rows):
        txs.append({"hash": r["hash"], "nonce": i, "block_hash": "0x" + "00" * 32, "block_number": r["block_number"],
                    "transaction_index": i, "from_address": r["from_address"], "to_address": r["to_address"],
                    "value": r["value"], "gas": r["gas"], "gas_price": r["gas_price"], "input": r["input"],
                    "block_timestamp": r["block_timestamp"], "max_fee_per_gas": "", "max_priority_fee_per_gas": "",
                    "transaction_type": 2})
        if i not in drop_receipts:
            receipts.append({"transaction_hash": r["hash"], "transaction_index": i, "block_hash": "0x" + "00" * 32,
                             "block_number": r["block_number"], "cumulative_gas_used": r["receipt_gas_used"],
                             "gas_used": r["receipt_gas_used"], "contract_address": r["receipt_contract_address"],
                             "root": "", "status": r["receipt_status"], "effective_gas_price": r["gas_price"]})
        items = json.loads(r["token_transfers"]) if r["token_transfers"] else []
        items = [dict(token_address=t["token_address"], from_address=t["from_address"], to_address=t["to_address"],
                      value=t.get("token_id", t["value"])) for t in items]
        for j, t in enumerate(items):
            moves.append(dict(t, transaction_hash=r["hash"], log_index=j, block_number=r["block_number"]))
        joined.append(dict(r, function_signature="", decoded_input="", token_transfers=json.dumps(items)))
    for name, cols, data in (("transactions", TX_COLS, txs), ("receipts", RECEIPT_COLS, receipts),
                             ("token_transfers", TT_COLS, moves[::-1])):  # transfers out of order: log_index sorts
        with open(folder / f"{name}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, cols)
            w.writeheader()
            w.writerows(data)
    return joined


def digest(out):
    return {n: hashlib.sha256((out / f"{n}.jsonl").read_bytes()).hexdigest()
            for n in ("train", "validation", "test", "rejects")}


@pytest.fixture(scope="module")
def rows():
    return list(generate_rows(600, seed=11))


def test_exports_give_the_same_records_as_the_pre_joined_csv(tmp_path, rows):
    joined = etl_exports(rows, tmp_path)
    write_rows(tmp_path / "decoded.csv", joined)
    a = prepare(tmp_path / "decoded.csv", tmp_path / "a", progress=False, count_tokens=False)
    res = CliRunner().invoke(prepare_cmd, [
        "--transactions", str(tmp_path / "transactions.csv"), "--receipts", str(tmp_path / "receipts.csv"),
        "--token-transfers", str(tmp_path / "token_transfers.csv"), "--output", str(tmp_path / "b"),
        "--no-progress", "--no-token-stats"])
    assert res.exit_code == 0, res.output
    assert "0 transaction(s) without a receipt (rejected)" in res.output
    with open(tmp_path / "b" / "prepare_summary.json") as f:
        b = json.load(f)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")
    assert (a["kept"], a["rejected"]) == (b["kept"], b["rejected"]) == (600, 0) and a["actions"] == b["actions"]
    assert b["joined"]["missing_receipts"] == 0


def test_missing_receipts_are_counted_and_rejected(tmp_path, rows):
    etl_exports(rows[:50], tmp_path, drop_receipts={3, 17, 40})
    s = prepare(None, tmp_path / "o", progress=False, count_tokens=False,
                transactions=tmp_path / "transactions.csv", receipts=tmp_path / "receipts.csv")
    assert (s["rows_read"], s["kept"], s["rejected"], s["joined"]["missing_receipts"]) == (50, 47, 3, 3)
    assert s["rejected_by_column"] == {"receipt": 3}
    with open(tmp_path / "o" / "rejects.jsonl") as f:
        rejects = [json.loads(line) for line in f]
    assert [r["row"] for r in rejects] == [5, 19, 42]  # CSV line numbers (header = 1)
    assert rejects[0]["reason"] == f"receipt: no receipt for this transaction in {tmp_path / 'receipts.csv'}"


def test_join_usage_errors(tmp_path, rows):
    etl_exports(rows[:5], tmp_path)
    run = lambda *args: CliRunner().invoke(prepare_cmd, [*args, "--output", str(tmp_path / "o")])  # noqa: E731
    res = run("--transactions", str(tmp_path / "transactions.csv"))
    assert res.exit_code == 2 and "give --input, or both --transactions and --receipts" in res.output
    res = run("--input", str(tmp_path / "transactions.csv"), "--receipts", str(tmp_path / "receipts.csv"))
    assert res.exit_code == 2
    assert "give --input or --transactions/--receipts[/--token-transfers], not both" in res.output
    (tmp_path / "bad.csv").write_text("transaction_hash,gas_used\n0x1,2\n")
    res = run("--transactions", str(tmp_path / "transactions.csv"), "--receipts", str(tmp_path / "bad.csv"))
    assert res.exit_code == 1
    assert res.output.strip() == f"Error: {tmp_path / 'bad.csv'}: row 1: missing required column(s) 'status'"
    assert not os.path.exists(tmp_path / "o")
