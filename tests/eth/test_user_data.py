"""prepare --abi / --tokens: a user's own contract and token labelled; malformed files are one-line errors."""

import hashlib
import json
import os

import pytest
from click.testing import CliRunner

from ethsft.cli.data import prepare as prepare_cmd
from ethsft.eth.prepare import prepare

U = "0x" + "11" * 20
V = "0x" + "22" * 20
VAULT = "0x" + "ab" * 20  # the user's own contract
MYTOKEN = "0x" + "cd" * 20  # the user's own token
STAKE_ABI = [{"type": "function", "name": "stake", "stateMutability": "nonpayable",
              "inputs": [{"name": "amount", "type": "uint256"}, {"name": "beneficiary", "type": "address"}]},
             {"type": "event", "name": "Staked", "inputs": []}]
STAKE = "0x7acb7757" + f"{12345:064x}" + "00" * 12 + "22" * 20  # stake(uint256,address)
TRANSFER = "0xa9059cbb" + "00" * 12 + "22" * 20 + f"{2_500_000:064x}"
TOKEN_LIST = {"name": "mine", "timestamp": "2026-01-01T00:00:00Z", "version": {"major": 1, "minor": 0, "patch": 0},
              "tokens": [{"chainId": 1, "address": "0x" + "CD" * 20, "symbol": "MINE", "decimals": 6, "name": "Mine"},
                         {"chainId": 137, "address": "0x" + "EF" * 20, "symbol": "POLY", "decimals": 18, "name": "P"}]}


def write(path, obj):
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return str(path)


def rows_csv(path, rows):
    cols = ["hash", "block_number", "from_address", "to_address", "value", "input", "receipt_status"]
    lines = [",".join(cols)] + [",".join([f"0x{i + 1:064x}", "1", U, to, "0", data, "1"]) for i, (to, data) in
                                enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def records(out):
    got = []
    for name in ("train", "validation", "test"):
        with open(os.path.join(out, f"{name}.jsonl")) as f:
            got += [json.loads(line) for line in f]
    return {json.loads(r["input"])["to"] + json.loads(r["input"]).get("function", ""): r for r in got}


def test_abi_folder_names_the_users_function_and_decodes_its_arguments_on_that_contract_only(tmp_path):
    folder = tmp_path / "abis"
    folder.mkdir()
    write(folder / f"{VAULT}.json", STAKE_ABI)
    inp = rows_csv(tmp_path / "d.csv", [(VAULT, STAKE), (V, STAKE)])
    s = prepare(inp, tmp_path / "o", progress=False, count_tokens=False, abi=str(folder))
    assert s["abi"] == {"path": str(folder), "contracts": 1, "functions": 1}
    recs = records(tmp_path / "o")
    mine = recs[VAULT + "stake"]
    assert json.loads(mine["input"])["args"] == {"amount": "12345", "beneficiary": V}
    assert json.loads(mine["output"]) == {"action": "contract_call", "protocol": None, "sender": U,
                                          "contract": VAULT, "function": "stake", "value": "0",
                                          "status": "success"}
    other = recs[V + "0x7acb7757"]  # another contract with the same selector: not the user's ABI
    assert json.loads(other["output"])["function"] == "0x7acb7757"


def test_tokens_and_an_etherscan_response_file_label_the_users_token(tmp_path):
    # an ABI file keyed by address holding an Etherscan getabi response; its transfer() clashes with ERC-20's
    etherscan = {"status": "1", "message": "OK", "result": json.dumps(
        [{"type": "function", "name": "transfer", "inputs": [{"name": "to", "type": "address"},
                                                             {"name": "value", "type": "uint256"}]}])}
    abi = write(tmp_path / "abi.json", {"0x" + "CD" * 20: etherscan})
    tokens = write(tmp_path / "list.json", TOKEN_LIST)
    inp = rows_csv(tmp_path / "d.csv", [(MYTOKEN, TRANSFER)])
    s = prepare(inp, tmp_path / "o", progress=False, count_tokens=False, abi=abi, tokens=tokens)
    assert s["token_list"] == {"path": tokens, "tokens": 1}  # the chain-137 entry is skipped
    out = json.loads(records(tmp_path / "o")[MYTOKEN + "transfer"]["output"])
    # the bundled ERC-20 ABI wins the clash; the list gives the symbol and the 6 decimals
    assert out == {"action": "transfer", "protocol": "erc20", "sender": U, "recipient": V,
                   "token": {"symbol": "MINE", "address": MYTOKEN, "amount": "2.5"}, "status": "success"}
    # without the list the token is unknown: raw amount (and the registry is left as it was)
    prepare(inp, tmp_path / "o2", progress=False, count_tokens=False)
    out = json.loads(records(tmp_path / "o2")[MYTOKEN + "transfer"]["output"])
    assert out["token"] == {"symbol": None, "address": MYTOKEN, "amount": "2500000"}


BAD = [
    ("abi", "abi.json", "{not json", "abi.json: not JSON (Expecting property name enclosed in double quotes: "
                                     "line 1 column 2 (char 1))"),
    ("abi", "abi.json", {"0x12": STAKE_ABI}, "abi.json: entry '0x12': not a contract address (0x + 40 hex digits)"),
    ("abi", "abi.json", {VAULT: {"a": 1}}, f"abi.json: entry {VAULT}: expected an ABI (a JSON list of entries) or "
                                           "an Etherscan getabi response, got dict"),
    ("abi", "abi.json", {VAULT: {"status": "0", "message": "NOTOK", "result": "Contract source code not verified"}},
     f"abi.json: entry {VAULT}: Etherscan response with status '0' (Contract source code not verified)"),
    ("abi", "abi.json", {VAULT: [{"type": "function", "name": "f", "inputs": [{"name": "x", "type": "uint7"}]}]},
     f"abi.json: entry {VAULT}: function 'f': not a valid ABI entry"),
    ("abi", "abi.json", {VAULT: [{"type": "function", "inputs": []}]},
     f"abi.json: entry {VAULT}: item 0: a function needs a 'name' and a list of 'inputs'"),
    ("tokens", "list.json", {"tokens": [{"chainId": 1, "address": MYTOKEN, "symbol": "M"}]},
     "list.json: tokens[0]: missing 'decimals'"),
    ("tokens", "list.json", {"tokens": [{"chainId": 1, "address": MYTOKEN, "symbol": "M", "decimals": "6"}]},
     "list.json: tokens[0]: 'decimals' must be an integer 0-255, got '6'"),
    ("tokens", "list.json", {"tokens": [{"chainId": 1, "address": "0xcd", "symbol": "M", "decimals": 6}]},
     "list.json: tokens[0]: 'address' must be 0x + 40 hex digits, got '0xcd'"),
    ("tokens", "list.json", [1, 2], "list.json: expected a token list: a JSON object with a \"tokens\" list"),
    ("tokens", "list.json", {"tokens": [{"chainId": 10, "address": MYTOKEN, "symbol": "M", "decimals": 6}]},
     "list.json: no token of chainId 1 (Ethereum mainnet) in the list"),
]


@pytest.mark.parametrize("flag,name,content,message", BAD, ids=[m[:40] for *_, m in BAD])
def test_malformed_files_are_one_line_errors_and_nothing_is_written(tmp_path, flag, name, content, message):
    bad = write(tmp_path / name, content)
    inp = rows_csv(tmp_path / "d.csv", [(VAULT, STAKE)])
    digest = hashlib.sha256(open(bad, "rb").read()).hexdigest()
    res = CliRunner().invoke(prepare_cmd, ["--input", inp, "--output", str(tmp_path / "o"), f"--{flag}", bad,
                                           "--no-progress", "--no-token-stats"])
    assert res.exit_code == 1
    line = res.output.strip()
    assert line.startswith(f"Error: {tmp_path}{os.sep}{message}") and "\n" not in line
    assert not (tmp_path / "o").exists()
    assert hashlib.sha256(open(bad, "rb").read()).hexdigest() == digest  # the user's file is untouched


def test_abi_folder_file_not_named_for_an_address(tmp_path):
    folder = tmp_path / "abis"
    folder.mkdir()
    write(folder / "vault.json", STAKE_ABI)
    res = CliRunner().invoke(prepare_cmd, ["--input", rows_csv(tmp_path / "d.csv", [(VAULT, STAKE)]),
                                           "--output", str(tmp_path / "o"), "--abi", str(folder), "--no-progress"])
    assert res.exit_code == 1
    assert res.output.strip() == (f"Error: {folder}{os.sep}vault.json: entry 'vault': not a contract address "
                                  "(0x + 40 hex digits)")
