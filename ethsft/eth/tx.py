"""One input row (ethereum-etl column names) -> a validated, decoded :class:`Tx`,
and the compact model-input JSON built from it.

Per-row value problems raise :class:`~ethsft.eth.errors.RowError` whose message
starts with the column name (``"value: expected ..."``).
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from functools import lru_cache

from ethsft.eth.abi import Function, lookup, render
from ethsft.eth.errors import RowError
from ethsft.eth.registry import eth, nfts
from ethsft.eth.universal_router import Step, decode_commands

REQUIRED = ("hash", "block_number", "from_address", "to_address", "value", "input", "receipt_status")
OPTIONAL = (
    "block_timestamp",
    "gas",
    "gas_price",
    "receipt_gas_used",
    "receipt_contract_address",
    "function_signature",
    "decoded_input",
    "token_transfers",
)
COLUMNS = REQUIRED[:2] + ("block_timestamp",) + REQUIRED[2:] + OPTIONAL[1:]

_HASH = re.compile(r"0x[0-9a-f]{64}")
_ADDR = re.compile(r"0x[0-9a-f]{40}")
_INT = re.compile(r"[0-9]+")
_SIG = re.compile(r"([A-Za-z_$][A-Za-z0-9_$]*)\((.*)\)")
_NAME = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")
_SIG_CHARS = re.compile(r"[A-Za-z0-9_$(),\[\] ]+")  # what a Solidity signature with parameter names is made of
_STATUS = {"1": 1, "0": 0, 1: 1, 0: 0}


def show(value, limit: int = 48) -> str:
    """repr() of a bad value, shortened for messages."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _empty(v) -> bool:
    return v is None or v == ""


def _hash(v) -> str:
    if isinstance(v, str):
        s = v.strip().lower()
        if _HASH.fullmatch(s):
            return s
    raise RowError(f"hash: expected a 0x-prefixed 32-byte hex string, got {show(v)}")


def _addr(col: str, v) -> str:
    if isinstance(v, str):
        s = v.strip().lower()
        if _ADDR.fullmatch(s):
            return s
    raise RowError(f"{col}: expected a 0x-prefixed 20-byte hex address, got {show(v)}")


UINT256_MAX = 2**256 - 1  # every amount, id and number on chain is a uint256


def _uint(col: str, v, what: str = "a non-negative integer") -> int:
    n = None
    if isinstance(v, str):
        s = v.strip()
        if _INT.fullmatch(s):
            n = int(s)
    elif isinstance(v, int) and not isinstance(v, bool) and v >= 0:
        n = v
    elif isinstance(v, Decimal) and v == v.to_integral_value() and v >= 0:
        n = int(v)
    if n is None:
        raise RowError(f"{col}: expected {what}, got {show(v)}")
    if n > UINT256_MAX:
        raise RowError(f"{col}: {show(v)} is above 2^256-1, the largest value a transaction can carry")
    return n


def _hexbytes(col: str, v) -> bytes:
    if _empty(v):
        return b""
    if isinstance(v, str):
        s = v.strip()
        if s[:2] in ("0x", "0X"):
            try:
                b = bytes.fromhex(s[2:])
            except ValueError:
                pass
            else:
                if 2 * len(b) == len(s) - 2:  # fromhex skips whitespace: refuse it
                    return b
    raise RowError(f"{col}: expected 0x-prefixed hex bytes (an even number of hex digits), got {show(v)}")


def _json(col: str, v, kind):
    if isinstance(v, kind):
        return v
    if isinstance(v, str):
        try:
            parsed = json.loads(v)
        except ValueError:
            pass
        else:
            if isinstance(parsed, kind):
                return parsed
    return None


def _transfers(v) -> list | None:
    if _empty(v):
        return None
    items = _json("token_transfers", v, list)
    bad = "token_transfers: expected a JSON list of {token_address, from_address, to_address, value[, token_id]}"
    if items is None:
        raise RowError(f"{bad}, got {show(v)}")
    out = []
    for i, t in enumerate(items):
        if not isinstance(t, dict):
            raise RowError(f"{bad}; item {i} is {show(t)}")
        try:
            tid = t.get("token_id")
            out.append(
                (
                    _addr("token_transfers", t["token_address"]),
                    _addr("token_transfers", t["from_address"]),
                    _addr("token_transfers", t["to_address"]),
                    _uint("token_transfers", t["value"]),
                    None if _empty(tid) else _uint("token_transfers", tid),
                )
            )
        except KeyError as e:
            raise RowError(f"token_transfers: item {i} has no {e.args[0]!r}") from None
        except RowError as e:
            raise RowError(f"token_transfers: item {i}: {str(e).split(': ', 1)[1]}") from None
    return out


@lru_cache(maxsize=4096)
def _user_signature(sig: str) -> tuple[str, str | None]:
    """(function name, selector or None) of a user-supplied function_signature: a bare name (``transfer``) is
    taken as the name; ``name(type[ name],...)`` must be nothing more (Solidity's characters only: no newline, no
    ``</s>``), so that its selector is checked against the calldata. Raises RowError otherwise."""
    from eth_utils import function_signature_to_4byte_selector

    text = sig.strip()
    if _NAME.fullmatch(text):
        return text, None
    m = _SIG.fullmatch(text)
    if not m or not _SIG_CHARS.fullmatch(text):
        raise RowError(f"function_signature: {show(sig)} is not a function signature (expected name(type,...) "
                       "or a bare name)")
    name, params = m.groups()
    if "(" in params:  # tuple parameters: cannot canonicalize cheaply, trust the name
        return name, None
    types = [p.split()[0] for p in params.split(",") if p.strip()]
    selector = "0x" + function_signature_to_4byte_selector(f"{name}({','.join(types)})").hex()
    return name, selector


class Tx:
    """A validated transaction row with its calldata decoded."""

    __slots__ = (
        "hash", "block_number", "sender", "to", "value", "data", "status", "created",
        "transfers", "selector", "call", "args", "inner", "steps", "user_function", "user_args",
    )

    def function_name(self) -> str | None:
        """Name of the called function: bundled ABI name, else the user's
        ``function_signature`` name, else the 0x-selector (None without calldata)."""
        if self.call is not None:
            return self.call.name
        if self.user_function is not None:
            return self.user_function
        if self.data:
            return "0x" + self.data[:4].hex()
        return None


_ROUTERS = ("uniswap", "universal_router", "oneinch")


def needs_transfers(fn: Function | None) -> bool:
    """Whether token_transfers matter for a call: router and aggregator calls
    (actual swap / liquidity amounts) and ERC-20-selector transferFrom / approve
    (a token_id in the transfers marks an NFT collection missing from the
    registry).  Only then is the column parsed, validated and shown to the
    model; for other rows it is ignored like the other unused columns."""
    return fn is not None and (fn.family.startswith(_ROUTERS) or (fn.family == "erc20" and fn.name != "transfer"))


def nft_standard(tx: Tx) -> str | None:
    """Standard of ``tx.to`` if it is an NFT collection ('erc721' | 'erc1155'):
    the bundled registry first, else an entry of its token_transfers with a
    token_id (ERC-20 and ERC-721 share the transferFrom / approve selectors)."""
    info = nfts().get(tx.to)
    if info:
        return info[1]
    if tx.transfers and any(t == tx.to and tid is not None for t, _, _, _, tid in tx.transfers):
        return "erc721"
    return None


def decode_call(data: bytes, to: str | None = None) -> tuple[Function | None, dict | None]:
    """Decode calldata sent to contract ``to`` with the bundled ABIs, then the
    user's ABI for ``to`` (:func:`ethsft.eth.abi.lookup`): (Function, args) or
    (None, None) for an unknown selector.  Raises RowError when a known
    selector's arguments do not decode."""
    if len(data) < 4:
        return None, None
    fn = lookup("0x" + data[:4].hex(), to)
    if fn is None:
        return None, None
    try:
        return fn, fn.decode(data[4:])
    except Exception as e:  # eth_abi raises several DecodingError subclasses
        raise RowError(f"input: calldata does not decode as {fn.signature} ({type(e).__name__})") from None


def normalize(row: dict) -> Tx:
    """Validate and decode one row (values as str, or native JSON/Parquet types)."""
    tx = Tx()
    tx.hash = _hash(row.get("hash"))
    tx.block_number = _uint("block_number", row.get("block_number"))
    tx.sender = _addr("from_address", row.get("from_address"))
    to = row.get("to_address")
    tx.to = None if _empty(to) else _addr("to_address", to)
    tx.value = _uint("value", row.get("value"), "a non-negative integer amount of wei")
    tx.data = _hexbytes("input", row.get("input"))
    status = row.get("receipt_status")
    if isinstance(status, str):
        status = status.strip()
    if _empty(status):
        raise RowError("receipt_status: empty (a receipt status of 0 or 1 is needed to label the outcome)")
    if status not in _STATUS or isinstance(status, bool):
        raise RowError(f"receipt_status: expected 0 or 1, got {show(status)}")
    tx.status = _STATUS[status]
    created = row.get("receipt_contract_address")
    tx.created = None if _empty(created) or tx.to is not None else _addr("receipt_contract_address", created)
    tx.selector = "0x" + tx.data[:4].hex() if len(tx.data) >= 4 else None
    tx.inner = tx.steps = None
    tx.user_function = tx.user_args = None
    if tx.to is None:
        tx.call = tx.args = tx.transfers = None
        return tx
    tx.call, tx.args = decode_call(tx.data, tx.to)
    tx.transfers = _transfers(row.get("token_transfers")) if needs_transfers(tx.call) else None
    if tx.call is None and tx.data:
        _user_columns(tx, row)
    elif tx.call is not None:
        if tx.call.name == "multicall":
            tx.inner = [decode_inner(b, tx.to) for b in tx.args["data"]]
        elif tx.call.family == "universal_router":
            tx.steps = decode_commands(tx.to, tx.args["commands"], tx.args["inputs"])
    return tx


def decode_inner(data: bytes, to: str | None = None) -> tuple[Function | None, dict | None, str]:
    """One multicall element: (Function, args, selector); (None, None, sel) if
    unknown or not decodable (the multicall is then labelled contract_call)."""
    sel = "0x" + data[:4].hex()
    try:
        fn, args = decode_call(data, to)
    except RowError:
        return None, None, sel
    return fn, args, sel


def _user_columns(tx: Tx, row: dict) -> None:
    sig = row.get("function_signature")
    if not _empty(sig):
        if not isinstance(sig, str):
            raise RowError(f"function_signature: expected a string, got {show(sig)}")
        name, selector = _user_signature(sig)
        if selector is not None and selector != tx.selector:
            raise RowError(
                f"function_signature: {show(sig)} has selector {selector}, the input starts with {tx.selector}"
            )
        tx.user_function = name
    dec = row.get("decoded_input")
    if not _empty(dec):
        args = _json("decoded_input", dec, dict)
        if args is None:
            raise RowError(f"decoded_input: expected a JSON object of named arguments, got {show(dec)}")
        tx.user_args = args


def v3_path(path: bytes) -> list:
    """Uniswap V3 packed path -> [token, fee, token, ...] (addresses lower-case)."""
    if len(path) < 43 or (len(path) - 20) % 23:
        raise RowError(f"input: malformed Uniswap V3 path ({len(path)} bytes)")
    out: list = []
    i = 0
    while True:
        out.append("0x" + path[i : i + 20].hex())
        i += 20
        if i == len(path):
            return out
        out.append(int.from_bytes(path[i : i + 3], "big"))
        i += 3


# arguments that never change the intent: left out of the model input
_DROP = {"deadline", "sqrtPriceLimitX96"}
# per family: signatures, salts, conduit keys and executor payloads are long and say nothing of the intent
_DROP_FAMILY = {
    "permit2": {"signature"},
    "oneinch_v5": {"permit", "data", "executor"},
    "oneinch_v6": {"data", "executor"},
    "seaport": {"signature", "salt", "zoneHash", "offererConduitKey", "fulfillerConduitKey", "conduitKey",
                "extraData", "criteriaResolvers", "zone", "startTime", "endTime", "totalOriginalAdditionalRecipients",
                "totalOriginalConsiderationItems"},
    "aave_v3_pool": {"referralCode"},
    "lido": {"_referral"},
}


def _prune(value, drop: set):
    if isinstance(value, dict):
        return {k: _prune(v, drop) for k, v in value.items() if k not in drop}
    if isinstance(value, list):
        return [_prune(v, drop) for v in value]
    return value


def _render_step(step: Step) -> dict:
    """A Universal Router command (or V4 action) as the model sees it."""
    if step.args is None:
        return {"command": step.name}
    args = step.args
    if step.name == "V4_SWAP":
        return {"command": step.name, "actions": [_render_step(a) for a in args["actions"]]}
    if step.name.startswith("V3_SWAP"):
        try:
            args = dict(args, path=v3_path(args["path"]))
        except RowError:
            pass
    elif step.name.startswith("PERMIT2_PERMIT"):
        args = {k: v for k, v in args.items() if k != "signature"}
    elif step.name.startswith("SWAP_"):
        args = _prune(args, {"hookData"})
    return {"command": step.name, "args": render(args)}


def _render_args(fn: Function, args: dict) -> dict:
    drop = _DROP_FAMILY.get(fn.family)
    if drop:
        return render(_prune({k: v for k, v in args.items() if k not in _DROP}, drop))
    if fn.family.startswith("uniswap"):
        if "params" in args:
            params = {k: v for k, v in args["params"].items() if k not in _DROP}
            if "path" in params:
                params["path"] = v3_path(params["path"])
            args = {"params": params}
        else:
            args = {k: v for k, v in args.items() if k not in _DROP}
    elif fn.family in ("erc721", "erc1155") and args.get("data") == b"":
        args = {k: v for k, v in args.items() if k != "data"}
    return render(args)


def model_input(tx: Tx) -> dict:
    """The transaction as the model sees it: only what helps extraction.

    Keys (in order, absent when empty): from, to, value (ETH, omitted when 0),
    created (contract address of a creation), function (ABI name, user
    function_signature name, or 0x-selector), args (decoded arguments; ints as
    strings; multicall data decoded; V3 paths as [token, fee, token, ...];
    ``deadline``, ``sqrtPriceLimitX96`` and empty NFT ``data`` left out),
    token_transfers (only where :func:`needs_transfers`), status.
    """
    d: dict = {"from": tx.sender, "to": tx.to}
    if tx.value:
        d["value"] = eth(tx.value)
    if tx.to is None:
        if tx.created:
            d["created"] = tx.created
    elif tx.data:
        d["function"] = tx.function_name()
        if tx.call is not None:
            if tx.inner is not None:
                calls = []
                for fn, args, sel in tx.inner:
                    if fn is None:
                        calls.append({"function": sel})
                    else:
                        try:
                            calls.append({"function": fn.name, "args": _render_args(fn, args)})
                        except RowError:
                            calls.append({"function": fn.name})
                rest = {k: render(v) for k, v in tx.args.items() if k != "data" and k not in _DROP}
                d["args"] = {**rest, "data": calls}
            elif tx.steps is not None:
                d["args"] = {"commands": [_render_step(s) for s in tx.steps]}
            elif tx.args:
                args = _render_args(tx.call, tx.args)
                if tx.call.family == "erc20" and tx.call.name != "transfer" and nft_standard(tx):
                    args = {("tokenId" if k == "amount" else k): v for k, v in args.items()}
                d["args"] = args
        elif tx.user_args:
            d["args"] = tx.user_args
    if tx.transfers:
        d["token_transfers"] = [
            {"token": t, "from": f, "to": to, "value": str(v)} if tid is None
            else {"token": t, "from": f, "to": to, "value": str(v), "token_id": str(tid)}
            for t, f, to, v, tid in tx.transfers
        ]
    d["status"] = "success" if tx.status else "failed"
    return d
