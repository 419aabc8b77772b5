"""A user's own ABIs (``prepare --abi``) and token list (``prepare --tokens``), read and checked up front.

ABIs, keyed by contract address, in Etherscan's format:

* a folder of ``<address>.json`` files, each a JSON ABI (a list of entries) or an Etherscan
  ``getabi`` response (``{"status": "1", "message": "OK", "result": "<the ABI as a JSON string>"}``);
* or one JSON file mapping each address to either of those.

Only ``function`` entries are used. Clash rule: the bundled ABIs win. A selector they know is decoded
and labelled as before on every contract (your token's ``transfer`` is still a transfer); your ABI
adds the functions of *its* address that they do not know, labelled ``contract_call`` with the
function's name and decoded arguments.

Token list: the standard token-list JSON (``{"tokens": [{"chainId", "address", "symbol",
"decimals", ...}]}``, tokenlists.org); entries of chain 1 are used, other chains skipped. A listed
token wins over the bundled registry for its address (its symbol and decimals label the amounts).

Every problem is one :class:`~ethsft.data.records.DataError` naming the file and the entry.
"""

from __future__ import annotations

import json
import os
import re

from ethsft.data.records import DataError
from ethsft.eth.abi import Function

_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")


def _read_json(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or type(e).__name__})") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason})") from None
    except ValueError as e:
        raise DataError(f"{path}: not JSON ({e})") from None


def _abi_entries(path: str, where: str, value) -> list:
    """The ABI list of one address: given as a list, a JSON string, or an Etherscan getabi response."""
    if isinstance(value, dict) and "result" in value:
        if str(value.get("status", "1")) != "1":
            raise DataError(f"{path}: {where}: Etherscan response with status {value.get('status')!r} "
                            f"({str(value.get('result'))[:80]})")
        value = value["result"]
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except ValueError as e:
            raise DataError(f"{path}: {where}: the ABI string is not JSON ({e})") from None
    if not isinstance(value, list):
        raise DataError(f"{path}: {where}: expected an ABI (a JSON list of entries) or an Etherscan getabi "
                        f"response, got {type(value).__name__}")
    return value


def _functions(path: str, where: str, entries: list) -> dict[str, Function]:
    table: dict[str, Function] = {}
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise DataError(f"{path}: {where}: item {i} is not a JSON object")
        if entry.get("type", "function") != "function":
            continue
        name, inputs = entry.get("name"), entry.get("inputs", [])
        if not isinstance(name, str) or not name or not isinstance(inputs, list):
            raise DataError(f"{path}: {where}: item {i}: a function needs a 'name' and a list of 'inputs'")
        try:
            fn = Function("user", {"name": name, "inputs": inputs})
        except Exception as e:  # a malformed type or parameter: eth-abi / KeyError
            raise DataError(f"{path}: {where}: function {name!r}: not a valid ABI entry ({type(e).__name__}: "
                            f"{e})") from None
        table.setdefault(fn.selector, fn)
    return table


def _address(path: str, key: str) -> str:
    if not isinstance(key, str) or not _ADDRESS.fullmatch(key):
        raise DataError(f"{path}: entry {key!r}: not a contract address (0x + 40 hex digits)")
    return key.lower()


def load_abis(path) -> dict[str, dict[str, Function]]:
    """``{contract address: {selector: Function}}`` from a folder of ``<address>.json`` files or one
    JSON file keyed by address."""
    path = os.fspath(path)
    out: dict[str, dict[str, Function]] = {}
    if os.path.isdir(path):
        names = sorted(n for n in os.listdir(path) if n.lower().endswith(".json"))
        if not names:
            raise DataError(f"{path}: no <address>.json files in this folder")
        for name in names:
            file = os.path.join(path, name)
            address = _address(file, name[: -len(".json")])
            out[address] = _functions(file, f"entry {address}", _abi_entries(file, f"entry {address}",
                                                                             _read_json(file)))
        return out
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file or folder")
    data = _read_json(path)
    if not isinstance(data, dict) or not data:
        raise DataError(f"{path}: expected a JSON object mapping contract addresses to ABIs")
    for key, value in data.items():
        address = _address(path, key)
        where = f"entry {key}"
        out[address] = _functions(path, where, _abi_entries(path, where, value))
    return out


def load_tokens(path) -> dict[str, tuple[str, int]]:
    """``{address: (symbol, decimals)}`` of the chain-1 entries of a token list."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise DataError(f"{path}: no such file")
    data = _read_json(path)
    items = data.get("tokens") if isinstance(data, dict) else None
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a token list: a JSON object with a \"tokens\" list")
    out: dict[str, tuple[str, int]] = {}
    for i, t in enumerate(items):
        where = f"{path}: tokens[{i}]"
        if not isinstance(t, dict):
            raise DataError(f"{where}: expected a JSON object")
        for key in ("chainId", "address", "symbol", "decimals"):
            if key not in t:
                raise DataError(f"{where}: missing {key!r}")
        chain, address, symbol, decimals = t["chainId"], t["address"], t["symbol"], t["decimals"]
        if not isinstance(chain, int) or isinstance(chain, bool):
            raise DataError(f"{where}: 'chainId' must be an integer, got {chain!r}")
        if not isinstance(address, str) or not _ADDRESS.fullmatch(address):
            raise DataError(f"{where}: 'address' must be 0x + 40 hex digits, got {address!r}")
        if not isinstance(symbol, str) or not symbol.strip():
            raise DataError(f"{where}: 'symbol' must be a non-empty string, got {symbol!r}")
        if not isinstance(decimals, int) or isinstance(decimals, bool) or not 0 <= decimals <= 255:
            raise DataError(f"{where}: 'decimals' must be an integer 0-255, got {decimals!r}")
        if chain == 1:
            out[address.lower()] = (symbol.strip(), decimals)
    if not out:
        raise DataError(f"{path}: no token of chainId 1 (Ethereum mainnet) in the list")
    return out
