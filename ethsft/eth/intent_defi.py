"""Intents of today's mainnet protocols: Uniswap Universal Router swaps, Permit2 approvals, 1inch
aggregator swaps, Lido staking, Aave v3 lending and Seaport NFT trades (schema: :mod:`.intent`).

Each labeller reads the decoded call (``tx.call``, ``tx.args``; Universal Router commands in
``tx.steps``) and returns the intent without ``status``; a call whose intent is not one action (a
Universal Router route with two outputs, a Permit2 batch of several tokens) is a ``contract_call``.
"""

from __future__ import annotations

from ethsft.eth.errors import RowError
from ethsft.eth.intent_values import amount, contract_call, nft, obj, transfer_sum
from ethsft.eth.registry import WETH, ZERO_ADDRESS, eth_obj, token_obj
from ethsft.eth.tx import Tx, v3_path
from ethsft.eth.universal_router import ADDRESS_THIS, CONTRACT_BALANCE, MSG_SENDER

DEFI_FAMILIES = frozenset({
    "universal_router", "permit2", "oneinch_v5", "oneinch_v6", "lido", "wsteth", "lido_withdrawal_queue",
    "aave_v3_pool", "seaport",
})
STETH = "0xae7ab96520de3a18e5e111b5eaab095312d7fe84"
WSTETH = "0x7f39c581f595b53c5cb19bd0b3f8da6c935e2ca0"
ETH_SENTINEL = "0x" + "ee" * 20  # 1inch's (and others') address for native ETH
UINT160_MAX = 2**160 - 1
UINT256_MAX = 2**256 - 1


def label_defi(tx: Tx) -> dict:
    """The intent of a call decoded by one of :data:`DEFI_FAMILIES`."""
    return _LABELLERS[tx.call.family](tx, tx.call.name, tx.args)


# -- Permit2 -----------------------------------------------------------------

def _permit_token(token: str, raw: int) -> dict:
    d = token_obj(token, raw)
    if raw == UINT160_MAX:
        d["amount"] = "unlimited"
    return d


def _permit2(tx: Tx, name: str, a: dict) -> dict:
    base = {"action": "approve", "protocol": "permit2", "sender": tx.sender}
    if name == "approve":
        return {**base, "spender": a["spender"], "token": _permit_token(a["token"], a["amount"]),
                "expiry": str(a["expiration"])}
    permit = a.get("permitSingle") or a["permitBatch"]
    details = permit["details"]
    if isinstance(details, list):
        if len(details) != 1:
            return contract_call(tx)
        details = details[0]
    return {**base, "from": a["owner"], "spender": permit["spender"],
            "token": _permit_token(details["token"], details["amount"]), "expiry": str(details["expiration"])}


# -- 1inch -------------------------------------------------------------------

def _native(token: str) -> str | None:
    return None if token in (ETH_SENTINEL, ZERO_ADDRESS) else token


def _oneinch(tx: Tx, name: str, a: dict) -> dict:
    d = a["desc"]
    src, dst = _native(d["srcToken"]), _native(d["dstToken"])
    recipient = d["dstReceiver"] if d["dstReceiver"] != ZERO_ADDRESS else tx.sender
    # native ETH paid out is not a token transfer: its amount stays unobserved
    out = None if dst is None else transfer_sum(tx, dst, to=recipient)
    return {"action": "swap", "protocol": "1inch_" + tx.call.family.rsplit("_", 1)[1], "sender": tx.sender,
            "recipient": recipient, "token_in": obj(src, d["amount"]), "token_out": obj(dst, out),
            "amount_out_min": amount(dst, d["minReturnAmount"])}


# -- Lido --------------------------------------------------------------------

def _lido(tx: Tx, name: str, a: dict) -> dict:
    return {"action": "stake", "protocol": "lido", "sender": tx.sender, "token": eth_obj(tx.value)}


def _wsteth(tx: Tx, name: str, a: dict) -> dict:
    if name == "wrap":
        return {"action": "wrap", "protocol": "lido", "sender": tx.sender,
                "token": token_obj(STETH, a["_stETHAmount"])}
    return {"action": "unwrap", "protocol": "lido", "sender": tx.sender,
            "token": token_obj(WSTETH, a["_wstETHAmount"])}


def _lido_withdrawal(tx: Tx, name: str, a: dict) -> dict:
    token = WSTETH if name.endswith("WstETH") else STETH
    owner = a["_owner"] if a["_owner"] != ZERO_ADDRESS else tx.sender
    return {"action": "unstake", "protocol": "lido", "sender": tx.sender, "recipient": owner,
            "token": token_obj(token, sum(a["_amounts"]))}


# -- Aave v3 -----------------------------------------------------------------

_RATE_MODES = {1: "stable", 2: "variable"}


def _aave(tx: Tx, name: str, a: dict) -> dict:
    token = token_obj(a["asset"], a["amount"])
    if a["amount"] == UINT256_MAX and name in ("withdraw", "repay"):
        token["amount"] = "all"  # the whole balance / debt
    d = {"action": name, "protocol": "aave_v3", "sender": tx.sender}
    if name == "withdraw":
        return {**d, "recipient": a["to"], "token": token}
    d.update(on_behalf_of=a["onBehalfOf"], token=token)
    if name != "supply":
        mode = a["interestRateMode"]
        d["rate_mode"] = _RATE_MODES.get(mode, str(mode))
    return d


# -- Seaport -----------------------------------------------------------------

_NFT_ITEMS = {2: "erc721", 3: "erc1155", 4: "erc721", 5: "erc1155"}  # ItemType; 4, 5: chosen by criteria
_CURRENCY_ITEMS = (0, 1)  # NATIVE, ERC20


def _price(token: str | None, raw: int | None) -> dict:
    return obj(None if token in (None, ZERO_ADDRESS) else token, raw)


def _seaport(tx: Tx, name: str, a: dict) -> dict:
    if name.startswith("fulfillBasicOrder"):
        return _seaport_basic(tx, a["parameters"])
    return _seaport_advanced(tx, a)


def _seaport_basic(tx: Tx, p: dict) -> dict:
    route = p["basicOrderType"] // 4  # 0-1: ETH for an NFT, 2-3: ERC-20 for an NFT, 4-5: an NFT for ERC-20
    fees = sum(r["amount"] for r in p["additionalRecipients"])
    base = {"protocol": "seaport", "sender": tx.sender}
    if route <= 3:
        return {"action": "nft_purchase", **base, "from": p["offerer"], "recipient": tx.sender,
                "token": nft(p["offerToken"], p["offerIdentifier"], p["offerAmount"]),
                "price": _price(p["considerationToken"], p["considerationAmount"] + fees)}
    if route <= 5:
        return {"action": "nft_sale", **base, "recipient": p["offerer"],
                "token": nft(p["considerationToken"], p["considerationIdentifier"], p["considerationAmount"]),
                "price": _price(p["offerToken"], max(p["offerAmount"] - fees, 0))}
    return contract_call(tx)


def _fraction(item: dict, num: int, den: int) -> int | None:
    if item["startAmount"] != item["endAmount"] or den == 0:
        return None  # an auction: the amount depends on the block time
    return item["startAmount"] * num // den


def _seaport_advanced(tx: Tx, a: dict) -> dict:
    order = a["advancedOrder"]
    p, num, den = order["parameters"], order["numerator"], order["denominator"]
    resolved = {(r["side"], r["index"]): r["identifier"] for r in a["criteriaResolvers"] if r["orderIndex"] == 0}
    recipient = a["recipient"] if a["recipient"] != ZERO_ADDRESS else tx.sender
    offer, consideration = p["offer"], p["consideration"]
    offer_nfts = [(i, o) for i, o in enumerate(offer) if o["itemType"] in _NFT_ITEMS]
    base = {"protocol": "seaport", "sender": tx.sender}
    if len(offer_nfts) == 1 and len(offer) == 1:  # a listing: the sender buys the NFT
        i, item = offer_nfts[0]
        pay = [c for c in consideration if c["itemType"] in _CURRENCY_ITEMS]
        if len(pay) != len(consideration) or len({c["token"] for c in pay}) != 1:
            return contract_call(tx)
        parts = [_fraction(c, num, den) for c in pay]
        total = None if None in parts else sum(parts)
        token_id = resolved.get((0, i), item["identifierOrCriteria"])
        return {"action": "nft_purchase", **base, "from": p["offerer"], "recipient": recipient,
                "token": nft(item["token"], token_id, _fraction(item, num, den)),
                "price": _price(pay[0]["token"], total)}
    if len(offer) == 1 and offer[0]["itemType"] == 1:  # an offer: the sender sells an NFT for ERC-20
        wanted = [(i, c) for i, c in enumerate(consideration) if c["itemType"] in _NFT_ITEMS]
        if len(wanted) != 1:
            return contract_call(tx)
        i, item = wanted[0]
        got = _fraction(offer[0], num, den)
        fees = [_fraction(c, num, den) for c in consideration if c["itemType"] in _CURRENCY_ITEMS]
        net = None if got is None or None in fees else max(got - sum(fees), 0)
        token_id = resolved.get((1, i), item["identifierOrCriteria"])
        return {"action": "nft_sale", **base, "recipient": p["offerer"],
                "token": nft(item["token"], token_id, _fraction(item, num, den)),
                "price": _price(offer[0]["token"], net)}
    return contract_call(tx)


# -- Uniswap Universal Router ------------------------------------------------

class _Leg:
    """One swap command (or V4 swap action): pool version, direction, tokens (None: native ETH in V4),
    the exact amount, the bound and the recipient of its output."""

    __slots__ = ("version", "exact_in", "tin", "tout", "amount", "bound", "recipient")

    def __init__(self, version, exact_in, tin, tout, amount_, bound, recipient):
        self.version, self.exact_in, self.tin, self.tout = version, exact_in, tin, tout
        self.amount, self.bound, self.recipient = amount_, bound, recipient


def _currency(c: str) -> str | None:
    return None if c == ZERO_ADDRESS else c


def _v4_legs(actions) -> list | None:
    legs, takes = [], {}
    for act in actions:
        n, x = act.name, act.args
        if x is None:
            return None
        if n.startswith("SWAP_"):
            exact_in = "_IN" in n
            if n.endswith("SINGLE"):
                c0, c1 = _currency(x["poolKey"]["currency0"]), _currency(x["poolKey"]["currency1"])
                tin, tout = (c0, c1) if x["zeroForOne"] else (c1, c0)
            elif exact_in:
                tin, tout = _currency(x["currency"]), _currency(x["path"][-1]["intermediateCurrency"])
            else:
                tin, tout = _currency(x["path"][0]["intermediateCurrency"]), _currency(x["currency"])
            legs.append(_Leg("v4", exact_in, tin, tout, x["amount"], x["limit"], MSG_SENDER))
        elif n in ("TAKE", "TAKE_PORTION"):
            if n == "TAKE":
                takes[_currency(x["currency"])] = x["recipient"]
        elif n == "TAKE_ALL":
            takes[_currency(x["currency"])] = MSG_SENDER
        elif n not in ("SETTLE", "SETTLE_ALL", "SWEEP"):
            return None
    for leg in legs:
        leg.recipient = takes.get(leg.tout, leg.recipient)
    return legs


def _ur_legs(tx: Tx) -> tuple[list, dict] | None:
    """The swap legs and the other commands (by name) of a Universal Router call; None when a
    command is unknown, undecodable or not part of a swap."""
    legs, other = [], {}
    for step in tx.steps:
        n, x = step.name, step.args
        if x is None:
            return None
        if n.startswith(("V2_SWAP", "V3_SWAP")):
            exact_in = n.endswith("_IN")
            if n.startswith("V2"):
                path = x["path"]
                if len(path) < 2:
                    return None
                tin, tout = path[0], path[-1]
            else:
                try:
                    path = v3_path(x["path"])
                except RowError:
                    return None
                tin, tout = (path[0], path[-1]) if exact_in else (path[-1], path[0])
            legs.append(_Leg(n[:2].lower(), exact_in, tin, tout, x["amountIn" if exact_in else "amountOut"],
                             x["amountOutMin" if exact_in else "amountInMax"], x["recipient"]))
        elif n == "V4_SWAP":
            v4 = _v4_legs(x["actions"])
            if v4 is None:
                return None
            legs += v4
        elif n in ("WRAP_ETH", "UNWRAP_WETH", "SWEEP", "TRANSFER", "PAY_PORTION", "PERMIT2_TRANSFER_FROM",
                   "PERMIT2_PERMIT", "PERMIT2_PERMIT_BATCH", "PERMIT2_TRANSFER_FROM_BATCH", "BALANCE_CHECK_ERC20"):
            other.setdefault(n, []).append(x)
        else:
            return None
    return legs, other


def _universal_router(tx: Tx, name: str, a: dict) -> dict:
    parsed = _ur_legs(tx) if tx.steps is not None else None
    if not parsed or not parsed[0]:
        return contract_call(tx)
    legs, other = parsed
    if len({leg.exact_in for leg in legs}) != 1:
        return contract_call(tx)
    exact_in = legs[0].exact_in
    ins, outs = [leg.tin for leg in legs], [leg.tout for leg in legs]
    sources, sinks = {t for t in ins if t not in outs}, {t for t in outs if t not in ins}
    if len(sources) != 1 or len(sinks) != 1:
        return contract_call(tx)  # several inputs or outputs: not one swap
    src, dst = sources.pop(), sinks.pop()
    wraps, unwraps = other.get("WRAP_ETH", []), other.get("UNWRAP_WETH", [])
    eth_in = src is None or (src == WETH and bool(wraps))
    eth_out = dst is None or (dst == WETH and bool(unwraps))

    def resolve(addr: str) -> str | None:  # None: the router holds the tokens
        if addr == MSG_SENDER:
            return tx.sender
        return None if addr in (ADDRESS_THIS, tx.to) else addr

    recipient = next((r for r in (resolve(leg.recipient) for leg in legs if leg.tout == dst) if r), None)
    if exact_in:  # amount_out_min: the legs' minimums for the output; amount_in_max: their maximums spent
        bound = sum(leg.bound for leg in legs if leg.tout == dst)
    else:
        bound = sum(leg.bound for leg in legs if leg.tin == src)
    if recipient is None:
        if eth_out and unwraps:
            recipient = resolve(unwraps[-1]["recipient"])
            if exact_in:
                bound = max(bound, sum(u["amountMin"] for u in unwraps))
        for s in other.get("SWEEP", []) + other.get("TRANSFER", []):
            if _currency(s["token"]) == dst and recipient is None:
                recipient = resolve(s["recipient"])
                if exact_in and "amountMin" in s:
                    bound = max(bound, s["amountMin"])
        recipient = recipient or tx.to
    versions = sorted({leg.version for leg in legs})
    base = {"action": "swap", "protocol": "uniswap_ur_" + "+".join(versions), "sender": tx.sender,
            "recipient": recipient}
    tin, tout = (None if eth_in else src), (None if eth_out else dst)
    if exact_in:
        paid = _ur_amount_in(tx, legs, src, eth_in, wraps, other.get("PERMIT2_TRANSFER_FROM", []))
        return {**base, "token_in": obj(tin, paid), "token_out": obj(tout, _ur_actual_out(tx, dst, eth_out, recipient)),
                "amount_out_min": amount(tout, bound)}
    got = sum(leg.amount for leg in legs if leg.tout == dst)
    return {**base, "token_in": obj(tin, _ur_actual_in(tx, src, eth_in)), "token_out": obj(tout, got),
            "amount_in_max": amount(tin, bound)}


def _ur_amount_in(tx: Tx, legs, src, eth_in: bool, wraps: list, pulls: list) -> int | None:
    """The exact input: the legs' amounts, where a leg spends the router's balance
    (``CONTRACT_BALANCE``) what was wrapped or pulled into the router for it."""
    total = 0
    for leg in legs:
        if leg.tin != src:
            continue
        if leg.amount < CONTRACT_BALANCE:
            total += leg.amount
        elif eth_in and wraps:
            total += sum(tx.value if w["amountMin"] >= CONTRACT_BALANCE else w["amountMin"] for w in wraps)
        elif any(p["token"] == src for p in pulls):
            total += sum(p["amount"] for p in pulls if p["token"] == src)
        else:
            return transfer_sum(tx, src, frm=tx.sender)
    return total


def _ur_actual_out(tx: Tx, dst, eth_out: bool, recipient: str) -> int | None:
    if not eth_out:
        return transfer_sum(tx, dst, to=recipient)
    if dst is None:
        return None  # V4 pays native ETH: not a token transfer
    into = transfer_sum(tx, WETH, to=tx.to)
    if into is None:
        return None
    return into - (transfer_sum(tx, WETH, frm=tx.to) or 0)  # less fees paid in WETH (PAY_PORTION)


def _ur_actual_in(tx: Tx, src, eth_in: bool) -> int | None:
    if src is None:
        return None
    return transfer_sum(tx, WETH, frm=tx.to) if eth_in else transfer_sum(tx, src, frm=tx.sender)


_LABELLERS = {
    "universal_router": _universal_router, "permit2": _permit2, "oneinch_v5": _oneinch, "oneinch_v6": _oneinch,
    "lido": _lido, "wsteth": _wsteth, "lido_withdrawal_queue": _lido_withdrawal, "aave_v3_pool": _aave,
    "seaport": _seaport,
}
