"""Bundled mainnet token / NFT / router registry and exact amount formatting."""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources

ZERO_ADDRESS = "0x" + "00" * 20
UINT256_MAX = 2**256 - 1


@lru_cache(maxsize=None)
def _data() -> dict:
    text = resources.files("ethsft.eth").joinpath("data/tokens.json").read_text("utf-8")
    return json.loads(text)


@lru_cache(maxsize=None)
def bundled_tokens() -> dict[str, tuple[str, int]]:
    """The bundled ERC-20 tokens: lower-case address -> (symbol, decimals)."""
    return {t["address"]: (t["symbol"], int(t["decimals"])) for t in _data()["tokens"]}


_TOKENS: dict[str, tuple[str, int]] | None = None  # bundled + a user's list, while user_tokens is active


def tokens() -> dict[str, tuple[str, int]]:
    """ERC-20 tokens: lower-case address -> (symbol, decimals); a user's list
    (:class:`user_tokens`) wins over the bundled registry for its addresses."""
    return bundled_tokens() if _TOKENS is None else _TOKENS


class user_tokens:
    """Context manager: add ``{address: (symbol, decimals)}`` to :func:`tokens` (the user's entry wins
    for an address in both) while it is active (``prepare --tokens``); restored on exit."""

    def __init__(self, extra: dict[str, tuple[str, int]]):
        self.extra = extra

    def __enter__(self):
        global _TOKENS
        self.saved = _TOKENS
        _TOKENS = {**tokens(), **self.extra}
        return self

    def __exit__(self, *exc):
        global _TOKENS
        _TOKENS = self.saved


@lru_cache(maxsize=None)
def nfts() -> dict[str, tuple[str, str]]:
    """NFT collections: lower-case address -> (symbol, standard 'erc721'|'erc1155')."""
    return {t["address"]: (t["symbol"], t["standard"]) for t in _data()["nfts"]}


def weth() -> str:
    return _data()["weth"]


WETH = "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"


def human(raw: int, decimals: int) -> str:
    """Exact decimal string of ``raw / 10**decimals`` (integer arithmetic, no float).

    >>> human(1500000, 6), human(10**18, 18), human(0, 18), human(5, 2)
    ('1.5', '1', '0', '0.05')
    """
    if decimals == 0:
        return str(raw)
    q, r = divmod(raw, 10**decimals)
    if r == 0:
        return str(q)
    return f"{q}.{str(r).rjust(decimals, '0').rstrip('0')}"


def eth(raw_wei: int) -> str:
    return human(raw_wei, 18)


def token_obj(address: str, raw: int | None, unlimited: bool = False) -> dict:
    """``{"symbol", "address", "amount"}`` for an ERC-20 amount.

    Known token: symbol + human amount.  Unknown token: symbol null and the raw
    integer amount.  ``raw`` None gives amount null (not observed).  With
    ``unlimited`` an amount of 2**256-1 is written ``"unlimited"``.
    """
    info = tokens().get(address)
    if raw is None:
        amount = None
    elif unlimited and raw == UINT256_MAX:
        amount = "unlimited"
    elif info is None:
        amount = str(raw)
    else:
        amount = human(raw, info[1])
    return {"symbol": info[0] if info else None, "address": address, "amount": amount}


def eth_obj(raw_wei: int | None) -> dict:
    return {"symbol": "ETH", "address": None, "amount": None if raw_wei is None else eth(raw_wei)}
