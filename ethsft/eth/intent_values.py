"""The values an intent is made of: amount strings, token and NFT objects, and amounts summed from a
transaction's token transfers (shared by :mod:`.intent` and :mod:`.intent_defi`)."""

from __future__ import annotations

from ethsft.eth.registry import WETH, eth, eth_obj, human, nfts, token_obj, tokens
from ethsft.eth.tx import Tx


def amount(token: str | None, raw: int) -> str:
    """Amount string of ``raw`` units of ``token`` (None = ETH)."""
    if token is None:
        return eth(raw)
    info = tokens().get(token)
    return human(raw, info[1]) if info else str(raw)


def obj(token: str | None, raw: int | None) -> dict:
    """Token object of ``token`` (None = ETH) with ``raw`` units (None = not observed)."""
    return eth_obj(raw) if token is None else token_obj(token, raw)


def transfer_sum(tx: Tx, token: str, *, to: str | None = None, frm: str | None = None) -> int | None:
    """Sum of the fungible ``token`` transfers (to / from the given addresses; a contract moving tokens
    to itself is not counted); None when the row has no transfers or none match."""
    if not tx.transfers:
        return None
    total, seen = 0, False
    for t, f, r, v, tid in tx.transfers:
        if t == token and tid is None and f != r and (to is None or r == to) and (frm is None or f == frm):
            total += v
            seen = True
    return total if seen else None


def actual_out(tx: Tx, token: str | None, recipient: str) -> int | None:
    """Amount received: ETH outputs are unwrapped by the router, so count WETH sent to it."""
    if token is None:
        return transfer_sum(tx, WETH, to=tx.to)
    return transfer_sum(tx, token, to=recipient)


def actual_in(tx: Tx, token: str | None) -> int | None:
    """Amount paid: ETH inputs are wrapped by the router, so count WETH it sends."""
    if token is None:
        return transfer_sum(tx, WETH, frm=tx.to)
    return transfer_sum(tx, token, frm=tx.sender)


def nft(address: str, token_id: int, count: int | None) -> dict:
    info = nfts().get(address)
    d = {"symbol": info[0] if info else None, "address": address, "token_id": str(token_id)}
    if count is not None:
        d["amount"] = str(count)
    return d


def contract_call(tx: Tx) -> dict:
    return {
        "action": "contract_call", "protocol": None, "sender": tx.sender, "contract": tx.to,
        "function": tx.function_name(), "value": eth(tx.value),
    }
