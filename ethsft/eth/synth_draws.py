"""The state and random draws behind :mod:`ethsft.eth.synth`'s rows: the contracts the scenarios call, the
scenario weights (``KINDS``, ``LEGACY_KINDS``) and named mixes (``MIXES``), typical human amount ranges, and
``Draws``, the generator's seeded state (token, user and contract pools, the block clock) with its draws (users,
tokens, amounts), the expected-value helpers (amounts via :mod:`decimal`, independently of
:mod:`ethsft.eth.intent`) and the calldata/token-transfer writers the scenarios (:mod:`.synth_transfers`,
:mod:`.synth_dex`, :mod:`.synth_defi`) share."""

from __future__ import annotations

import hashlib
import json
import math
import random
from decimal import Decimal, localcontext

from ethsft.eth.abi import render
from ethsft.eth.registry import WETH, _data

V2_ROUTER = "0x7a250d5630b4cf539739df2c5dacb4c659f2488d"
V3_ROUTER = "0xe592427a0aece92de3edee1f18e0157c05861564"
V3_ROUTER02 = "0x68b3465833fb72a70ecdf485e0e4c7bd8665fc45"
UNIVERSAL_ROUTER = "0x3fc91a3afd70395cd496c647d5a6cc9d4b2b7fad"
SEAPORT_CONDUIT = "0x1e0049783f008a0085193e00003d00cd54003c71"
ZERO = "0x" + "00" * 20
MSG_SENDER = "0x" + "00" * 19 + "01"
ADDRESS_THIS = "0x" + "00" * 19 + "02"
MAX_UINT = 2**256 - 1

# The first mix (scenario -> weight, percent-ish): swaps through the V2 / V3 routers only. Kept as the
# "legacy" mix, which reproduces its rows seed for seed (the README's accuracy table was measured on it).
LEGACY_KINDS = {
    "native_transfer": 18, "erc20_transfer": 26, "erc20_transfer_from": 2, "erc20_approve": 8,
    "v2_swap": 12, "v3_swap": 10, "wrap": 4, "unwrap": 3, "erc721_transfer": 3,
    "erc1155_transfer": 1, "approval_for_all": 1.5, "add_liquidity": 1.5,
    "remove_liquidity": 1, "contract_creation": 1, "unknown_call": 5,
}
# Today's mainnet, by transaction count: an estimate, not a measurement. Plain ETH and ERC-20 transfers
# still make up about half of all transactions; most Uniswap swaps go through the Universal Router (with
# Permit2 approvals beside the ERC-20 ones), the V2 / V3 routers keep a tail, aggregators (1inch) carry a
# few percent; Lido staking, Aave lending and Seaport NFT trades are around a percent or two each; calls
# to contracts outside the bundled ABIs (bots, mints, other protocols) are a large remainder. Re-weigh for
# your data from the "actions" counts prepare writes for a sample of your own export.
KINDS = {
    "native_transfer": 20, "erc20_transfer": 25, "erc20_transfer_from": 1.5, "erc20_approve": 7,
    "permit2_approve": 1.5, "v2_swap": 1.5, "v3_swap": 2.5, "ur_swap": 12, "aggregator_swap": 3,
    "wrap": 2, "unwrap": 1.5, "erc721_transfer": 2, "erc1155_transfer": 1, "approval_for_all": 1.5,
    "add_liquidity": 0.5, "remove_liquidity": 0.5, "lido_stake": 0.6, "lido_wrap": 0.6, "lido_unstake": 0.4,
    "aave": 2.5, "seaport": 1.5, "contract_creation": 1, "unknown_call": 9,
}
# Named mixes: "default" (KINDS); "legacy" (LEGACY_KINDS); "v3-unknown", a held-out set unlike the legacy
# training data: triples the Uniswap V3 share, wraps most V3 swaps in multicall and draws unknown
# (unregistered) tokens four times as often.
MIXES = {
    "default": {"kinds": KINDS, "weights": {}, "unknown_scale": 1.0, "multicall_p": 0.35},
    "legacy": {"kinds": LEGACY_KINDS, "weights": {}, "unknown_scale": 1.0, "multicall_p": 0.35},
    "v3-unknown": {"kinds": LEGACY_KINDS, "weights": {"v3_swap": 30, "unknown_call": 8}, "unknown_scale": 4.0,
                   "multicall_p": 0.8},
}
# typical human amount ranges
RANGES = {
    "USDT": (5, 50_000), "USDC": (5, 50_000), "DAI": (5, 20_000), "WETH": (0.01, 30),
    "WBTC": (0.001, 3), "SHIB": (1e5, 1e10), "PEPE": (1e6, 1e10), "GUSD": (1, 10_000),
    "stETH": (0.05, 50), "wstETH": (0.05, 40), "rETH": (0.05, 40), "cbETH": (0.05, 40),
    "MKR": (0.01, 20), "YFI": (0.001, 2), "PAXG": (0.01, 10), "AAVE": (0.1, 200),
}


def dec_str(raw: int, decimals: int) -> str:
    """Human amount via Decimal (independent of registry.human)."""
    with localcontext() as ctx:
        ctx.prec = 200
        v = Decimal(raw).scaleb(-decimals).normalize()
        return format(v, "f")


def _addr(n: int) -> str:
    return "0x%040x" % n


class Draws:
    """A generator's state and draws, deterministic for a seed; the scenario classes build on it."""

    def __init__(self, n: int, seed: int, mix: str = "default"):
        self.rng = rng = random.Random(seed)
        self.mix = MIXES[mix]
        self.seed = seed
        data = _data()
        self.tokens = [(t["address"], t["symbol"], t["decimals"]) for t in data["tokens"]]
        self.token_w = [t["weight"] for t in data["tokens"]]
        self.by_symbol = {t[1]: t for t in self.tokens}
        self.nft721 = [(c["address"], c["symbol"]) for c in data["nfts"] if c["standard"] == "erc721"]
        self.nft1155 = [(c["address"], c["symbol"]) for c in data["nfts"] if c["standard"] == "erc1155"]
        self.users = [_addr(rng.getrandbits(160)) for _ in range(max(64, n // 6))]
        self.unknown_tokens = [_addr(rng.getrandbits(160)) for _ in range(40)]
        self.unknown_nfts = [_addr(rng.getrandbits(160)) for _ in range(12)]
        self.contracts = [_addr(rng.getrandbits(160)) for _ in range(60)] + [UNIVERSAL_ROUTER]
        kinds = self.mix["kinds"]
        self.kinds = list(kinds)
        self.kind_w = [self.mix["weights"].get(k, w) for k, w in kinds.items()]
        self.block = 18_500_000 + rng.randrange(100_000)
        self.ts = 1_700_000_000 + rng.randrange(10_000_000)

    # -- draws -----------------------------------------------------------
    def user(self) -> str:
        # skewed: a few addresses are very active, like real users / bots
        return self.users[int(len(self.users) * self.rng.random() ** 3)]

    def other_user(self, not_this: str) -> str:
        while True:
            u = self.user()
            if u != not_this:
                return u

    def token(self, unknown_p: float = 0.08, exclude=()) -> tuple[str, str | None, int | None]:
        while True:
            if self.rng.random() < min(1.0, unknown_p * self.mix["unknown_scale"]):
                t = (self.rng.choice(self.unknown_tokens), None, None)
            else:
                t = self.rng.choices(self.tokens, self.token_w)[0]
            if t[0] not in exclude:
                return t

    def raw_amount(self, tok) -> int:
        rng = self.rng
        _, sym, dec = tok
        if dec is None:
            return rng.randint(1, 10**24)
        lo, hi = RANGES.get(sym, (1, 10_000))
        value = 10 ** rng.uniform(math.log10(lo), math.log10(hi))
        places = min(dec, rng.choice([0, 1, 2, 2, 3, 4, 6, dec]))
        raw = int(round(value * 10**places)) * 10 ** (dec - places)
        if rng.random() < 0.2:  # full precision tail, like real balances
            raw += rng.randrange(10 ** max(dec - places, 0))
        return max(raw, 1)

    def eth_amount(self, lo=0.001, hi=20.0) -> int:
        return self.raw_amount((WETH, "ETH", 18)) if lo is None else self.raw_amount_range(lo, hi, 18)

    def raw_amount_range(self, lo, hi, dec) -> int:
        rng = self.rng
        value = 10 ** rng.uniform(math.log10(lo), math.log10(hi))
        places = min(dec, rng.choice([1, 2, 3, 4, 6, dec]))
        return max(int(round(value * 10**places)) * 10 ** (dec - places), 1)

    def pair(self, a: str, b: str) -> str:
        x, y = sorted((a, b))
        return "0x" + hashlib.sha256(f"{x}{y}{self.seed}".encode()).hexdigest()[:40]

    # -- expected-value helpers (Decimal based) --------------------------
    @staticmethod
    def tobj(tok, raw):
        addr, sym, dec = tok
        if raw is None:
            amount = None
        elif sym is None:
            amount = str(raw)
        else:
            amount = dec_str(raw, dec)
        return {"symbol": sym, "address": addr, "amount": amount}

    @staticmethod
    def eobj(raw):
        return {"symbol": "ETH", "address": None, "amount": None if raw is None else dec_str(raw, 18)}

    @staticmethod
    def amt(tok, raw):
        return str(raw) if tok[1] is None else dec_str(raw, tok[2])

    # -- what the scenarios write into a row -----------------------------
    def call(self, r: dict, fn, args: dict, decoded_p: float = 0.4) -> None:
        r["input"] = "0x" + fn.encode(args).hex()
        if self.rng.random() < decoded_p:
            r["function_signature"] = fn.signature
            r["decoded_input"] = json.dumps(render(args), separators=(",", ":"))

    def tt(self, ctx, token, frm, to, value, token_id=None):
        ctx["transfers"].append((token, frm, to, value, token_id))
