"""Uniswap Universal Router ``execute``: its command bytes and their inputs, decoded with eth-abi.

``execute(commands, inputs[, deadline])`` runs one command per byte of ``commands`` (the low six bits name
it; the top bit only allows it to revert) on the ABI-encoded ``inputs[i]``. :func:`decode_commands` turns
them into :class:`Step` objects; a ``V4_SWAP`` step holds the V4 router's actions the same way. The input
layouts are those of Uniswap's ``Dispatcher`` / ``V4Router`` (public, github.com/Uniswap/universal-router
and v4-periphery); later router versions append fields (``minHopPriceX36``) after these, which decoding
the leading fields ignores. NFT-marketplace commands of the first routers are left undecoded (the
transaction is then a ``contract_call``).
"""

from __future__ import annotations

from functools import lru_cache

from ethsft.eth.abi import Function

# the first Universal Routers, where command 0x10 is a Seaport purchase, not V4_SWAP
V1_ROUTERS = frozenset({"0xef1c6e67703c7bd7107eed8303fbe6ec2554bf6b", "0x3fc91a3afd70395cd496c647d5a6cc9d4b2b7fad"})
CONTRACT_BALANCE = 1 << 255  # amountIn meaning "the router's whole balance"
MSG_SENDER = "0x" + "00" * 19 + "01"
ADDRESS_THIS = "0x" + "00" * 19 + "02"

_A, _U = "address", "uint256"
_DETAILS = "(address,uint160,uint48,uint48)"
_POOL_KEY = "(address,address,uint24,int24,address)"
_PATH_KEY = "(address,uint24,int24,address,bytes)"

# command byte -> (name, [(argument name, type), ...])
COMMANDS = {
    0x00: ("V3_SWAP_EXACT_IN", [("recipient", _A), ("amountIn", _U), ("amountOutMin", _U), ("path", "bytes"),
                                ("payerIsUser", "bool")]),
    0x01: ("V3_SWAP_EXACT_OUT", [("recipient", _A), ("amountOut", _U), ("amountInMax", _U), ("path", "bytes"),
                                 ("payerIsUser", "bool")]),
    0x02: ("PERMIT2_TRANSFER_FROM", [("token", _A), ("recipient", _A), ("amount", "uint160")]),
    0x03: ("PERMIT2_PERMIT_BATCH", [("permitBatch", f"({_DETAILS}[],address,uint256)"), ("signature", "bytes")]),
    0x04: ("SWEEP", [("token", _A), ("recipient", _A), ("amountMin", _U)]),
    0x05: ("TRANSFER", [("token", _A), ("recipient", _A), ("value", _U)]),
    0x06: ("PAY_PORTION", [("token", _A), ("recipient", _A), ("bips", _U)]),
    0x08: ("V2_SWAP_EXACT_IN", [("recipient", _A), ("amountIn", _U), ("amountOutMin", _U), ("path", "address[]"),
                                ("payerIsUser", "bool")]),
    0x09: ("V2_SWAP_EXACT_OUT", [("recipient", _A), ("amountOut", _U), ("amountInMax", _U), ("path", "address[]"),
                                 ("payerIsUser", "bool")]),
    0x0A: ("PERMIT2_PERMIT", [("permitSingle", f"({_DETAILS},address,uint256)"), ("signature", "bytes")]),
    0x0B: ("WRAP_ETH", [("recipient", _A), ("amountMin", _U)]),
    0x0C: ("UNWRAP_WETH", [("recipient", _A), ("amountMin", _U)]),
    0x0D: ("PERMIT2_TRANSFER_FROM_BATCH", [("batchDetails", "(address,address,uint160,address)[]")]),
    0x0E: ("BALANCE_CHECK_ERC20", [("owner", _A), ("token", _A), ("minBalance", _U)]),
    0x10: ("V4_SWAP", [("actions", "bytes"), ("params", "bytes[]")]),
}
# V4 router action byte -> (name, [(argument name, type), ...]); the swap parameters are one struct
V4_ACTIONS = {
    0x06: ("SWAP_EXACT_IN_SINGLE", [("params", f"({_POOL_KEY},bool,uint128,uint128,bytes)")]),
    0x07: ("SWAP_EXACT_IN", [("params", f"(address,{_PATH_KEY}[],uint128,uint128)")]),
    0x08: ("SWAP_EXACT_OUT_SINGLE", [("params", f"({_POOL_KEY},bool,uint128,uint128,bytes)")]),
    0x09: ("SWAP_EXACT_OUT", [("params", f"(address,{_PATH_KEY}[],uint128,uint128)")]),
    0x0B: ("SETTLE", [("currency", _A), ("amount", _U), ("payerIsUser", "bool")]),
    0x0C: ("SETTLE_ALL", [("currency", _A), ("maxAmount", _U)]),
    0x0E: ("TAKE", [("currency", _A), ("recipient", _A), ("amount", _U)]),
    0x0F: ("TAKE_ALL", [("currency", _A), ("minAmount", _U)]),
    0x10: ("TAKE_PORTION", [("currency", _A), ("recipient", _A), ("bips", _U)]),
    0x14: ("SWEEP", [("currency", _A), ("to", _A)]),
}
# field names of the V4 swap structs, in order
_SINGLE = ("poolKey", "zeroForOne", "amount", "limit", "hookData")
_MULTI = ("currency", "path", "amount", "limit")


class Step:
    """One command (or V4 action): ``name`` (``"0x1d"`` when unknown) and ``args`` (None when unknown or
    undecodable; a ``V4_SWAP``'s ``args["actions"]`` is a list of Steps)."""

    __slots__ = ("name", "args")

    def __init__(self, name: str, args: dict | None):
        self.name, self.args = name, args

    def __repr__(self) -> str:
        return f"Step({self.name}, {self.args!r})"


@lru_cache(maxsize=None)
def _function(table: str, code: int) -> Function | None:
    spec = (COMMANDS if table == "command" else V4_ACTIONS).get(code)
    if spec is None:
        return None
    name, params = spec
    return Function(table, {"name": name, "inputs": [{"name": n, "type": t} for n, t in params]})


def _decode(table: str, code: int, data: bytes) -> Step:
    fn = _function(table, code)
    if fn is None:
        return Step(f"0x{code:02x}", None)
    try:
        args = fn.decode(data)
    except Exception:  # eth_abi's DecodingError family: the step stays opaque
        return Step(fn.name, None)
    if fn.name.startswith("SWAP_"):
        p = args["params"]
        fields = _SINGLE if fn.name.endswith("SINGLE") else _MULTI
        args = dict(zip(fields, p))
        if "poolKey" in args:
            args["poolKey"] = dict(zip(("currency0", "currency1", "fee", "tickSpacing", "hooks"), args["poolKey"]))
        else:
            args["path"] = [dict(zip(("intermediateCurrency", "fee", "tickSpacing", "hooks", "hookData"), k))
                            for k in args["path"]]
    elif fn.name == "V4_SWAP":
        actions, params = args["actions"], args["params"]
        if len(actions) != len(params):
            return Step(fn.name, None)
        args = {"actions": [_decode("v4", a, p) for a, p in zip(actions, params)]}
    return Step(fn.name, args)


def decode_commands(router: str | None, commands: bytes, inputs: list) -> list[Step] | None:
    """The steps of one ``execute`` call, or None when commands and inputs differ in number."""
    if len(commands) != len(inputs):
        return None
    v1 = router in V1_ROUTERS
    steps = []
    for byte, data in zip(commands, inputs):
        code = byte & 0x3F
        if v1 and code >= 0x10:
            steps.append(Step(f"0x{code:02x}", None))
        else:
            steps.append(_decode("command", code, data))
    return steps
