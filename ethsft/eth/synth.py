"""Synthetic but realistic ``decoded.csv`` rows for demos, tests and benchmarks.

Real token contracts and decimals (bundled registry), real selectors, calldata
encoded with eth-abi, token_transfers that match the call, a realistic mix of
actions (mostly ERC-20 transfers and swaps), a few failed transactions and
contract creations, and users that recur (a skewed draw from a pool).  About
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
import hashlib
import json
import math
import os
import random
from decimal import Decimal, localcontext
from typing import Iterable, Iterator

import eth_abi
from eth_utils import function_signature_to_4byte_selector

from ethsft.eth.abi import by_name, render
from ethsft.eth.registry import WETH, _data
from ethsft.eth.tx import COLUMNS

V2_ROUTER = "0x7a250d5630b4cf539739df2c5dacb4c659f2488d"
V3_ROUTER = "0xe592427a0aece92de3edee1f18e0157c05861564"
V3_ROUTER02 = "0x68b3465833fb72a70ecdf485e0e4c7bd8665fc45"
UNIVERSAL_ROUTER = "0x3fc91a3afd70395cd496c647d5a6cc9d4b2b7fad"
SEAPORT_CONDUIT = "0x1e0049783f008a0085193e00003d00cd54003c71"
ZERO = "0x" + "00" * 20
MSG_SENDER = "0x" + "00" * 19 + "01"
ADDRESS_THIS = "0x" + "00" * 19 + "02"
MAX_UINT = 2**256 - 1

# scenario -> weight (percent-ish)
KINDS = {
    "native_transfer": 18, "erc20_transfer": 26, "erc20_transfer_from": 2, "erc20_approve": 8,
    "v2_swap": 12, "v3_swap": 10, "wrap": 4, "unwrap": 3, "erc721_transfer": 3,
    "erc1155_transfer": 1, "approval_for_all": 1.5, "add_liquidity": 1.5,
    "remove_liquidity": 1, "contract_creation": 1, "unknown_call": 5,
}
# Named mixes for held-out sets unlike the training data: "v3-unknown" triples the Uniswap V3 share, wraps
# most V3 swaps in multicall and draws unknown (unregistered) tokens four times as often.
MIXES = {
    "default": {"weights": {}, "unknown_scale": 1.0, "multicall_p": 0.35},
    "v3-unknown": {"weights": {"v3_swap": 30, "unknown_call": 8}, "unknown_scale": 4.0, "multicall_p": 0.8},
}
# typical human amount ranges
RANGES = {
    "USDT": (5, 50_000), "USDC": (5, 50_000), "DAI": (5, 20_000), "WETH": (0.01, 30),
    "WBTC": (0.001, 3), "SHIB": (1e5, 1e10), "PEPE": (1e6, 1e10), "GUSD": (1, 10_000),
    "stETH": (0.05, 50), "wstETH": (0.05, 40), "rETH": (0.05, 40), "cbETH": (0.05, 40),
    "MKR": (0.01, 20), "YFI": (0.001, 2), "PAXG": (0.01, 10), "AAVE": (0.1, 200),
}
V2_SWAPS = {  # name -> (exact_in, eth_in, eth_out, weight)
    "swapExactTokensForTokens": (True, False, False, 20),
    "swapTokensForExactTokens": (False, False, False, 6),
    "swapExactETHForTokens": (True, True, False, 20),
    "swapTokensForExactETH": (False, False, True, 4),
    "swapExactTokensForETH": (True, False, True, 15),
    "swapETHForExactTokens": (False, True, False, 6),
    "swapExactTokensForTokensSupportingFeeOnTransferTokens": (True, False, False, 8),
    "swapExactETHForTokensSupportingFeeOnTransferTokens": (True, True, False, 12),
    "swapExactTokensForETHSupportingFeeOnTransferTokens": (True, False, True, 9),
}
UNKNOWN_FUNCTIONS = [  # (signature, arg names) not in the bundled ABIs
    ("stake(uint256)", ["amount"]),
    ("claim()", []),
    ("mint(uint256)", ["quantity"]),
    ("deposit(uint256,address)", ["assets", "receiver"]),
    ("redeem(uint256,address,address)", ["shares", "receiver", "owner"]),
    ("execute(bytes,bytes[],uint256)", ["commands", "inputs", "deadline"]),
]


def dec_str(raw: int, decimals: int) -> str:
    """Human amount via Decimal (independent of registry.human)."""
    with localcontext() as ctx:
        ctx.prec = 200
        v = Decimal(raw).scaleb(-decimals).normalize()
        return format(v, "f")


def _addr(n: int) -> str:
    return "0x%040x" % n


class _Gen:
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
        self.kinds = list(KINDS)
        self.kind_w = [self.mix["weights"].get(k, w) for k, w in KINDS.items()]
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

    # -- row -------------------------------------------------------------
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

    def call(self, r: dict, fn, args: dict, decoded_p: float = 0.4) -> None:
        r["input"] = "0x" + fn.encode(args).hex()
        if self.rng.random() < decoded_p:
            r["function_signature"] = fn.signature
            r["decoded_input"] = json.dumps(render(args), separators=(",", ":"))

    def tt(self, ctx, token, frm, to, value, token_id=None):
        ctx["transfers"].append((token, frm, to, value, token_id))

    # -- scenarios: each fills the row and returns the expected intent ------
    def _native_transfer(self, r, ctx):
        to = self.other_user(ctx["sender"])
        value = self.eth_amount(0.001, 25) if self.rng.random() < 0.97 else 0
        r["to_address"], r["value"] = to, value
        return {"action": "transfer", "protocol": "native", "sender": ctx["sender"], "recipient": to,
                "token": self.eobj(value)}

    def _erc20_transfer(self, r, ctx):
        tok = self.token()
        to = self.other_user(ctx["sender"])
        raw = self.raw_amount(tok)
        r["to_address"] = tok[0]
        self.call(r, by_name("erc20", "transfer"), {"to": to, "amount": raw})
        self.tt(ctx, tok[0], ctx["sender"], to, raw)
        return {"action": "transfer", "protocol": "erc20", "sender": ctx["sender"], "recipient": to,
                "token": self.tobj(tok, raw)}

    def _erc20_transfer_from(self, r, ctx):
        tok = self.token()
        owner = self.other_user(ctx["sender"])
        to = self.other_user(owner)
        raw = self.raw_amount(tok)
        r["to_address"] = tok[0]
        self.call(r, by_name("erc20", "transferFrom"), {"from": owner, "to": to, "amount": raw})
        self.tt(ctx, tok[0], owner, to, raw)
        return {"action": "transfer", "protocol": "erc20", "sender": ctx["sender"], "from": owner,
                "recipient": to, "token": self.tobj(tok, raw)}

    def _erc20_approve(self, r, ctx):
        rng = self.rng
        tok = self.token()
        spender = rng.choice([V2_ROUTER, V3_ROUTER, V3_ROUTER02, UNIVERSAL_ROUTER, rng.choice(self.contracts)])
        unlimited = rng.random() < 0.55
        raw = MAX_UINT if unlimited else (0 if rng.random() < 0.05 else self.raw_amount(tok))
        r["to_address"] = tok[0]
        self.call(r, by_name("erc20", "approve"), {"spender": spender, "amount": raw})
        obj = self.tobj(tok, raw)
        if unlimited:
            obj["amount"] = "unlimited"
        return {"action": "approve", "protocol": "erc20", "sender": ctx["sender"], "spender": spender,
                "token": obj}

    def _wrap(self, r, ctx):
        value = self.eth_amount(0.01, 50)
        r["to_address"], r["value"] = WETH, value
        if self.rng.random() < 0.7:
            self.call(r, by_name("weth9", "deposit"), {})
        return {"action": "wrap", "protocol": "weth", "sender": ctx["sender"],
                "token": {"symbol": "WETH", "address": WETH, "amount": dec_str(value, 18)}}

    def _unwrap(self, r, ctx):
        wad = self.eth_amount(0.01, 50)
        r["to_address"] = WETH
        self.call(r, by_name("weth9", "withdraw"), {"wad": wad})
        return {"action": "unwrap", "protocol": "weth", "sender": ctx["sender"],
                "token": {"symbol": "WETH", "address": WETH, "amount": dec_str(wad, 18)}}

    def _v2_swap(self, r, ctx):
        rng, sender = self.rng, ctx["sender"]
        names = list(V2_SWAPS)
        name = rng.choices(names, [V2_SWAPS[n][3] for n in names])[0]
        exact_in, eth_in, eth_out, _ = V2_SWAPS[name]
        weth = self.by_symbol["WETH"]
        tin = weth if eth_in else self.token(0.1, exclude=(WETH,))
        tout = weth if eth_out else self.token(0.1, exclude=(WETH, tin[0]))
        path = [tin[0], tout[0]]
        if rng.random() < 0.3:
            mid = self.by_symbol["USDC"] if WETH in path else weth
            if mid[0] not in path:
                path.insert(1, mid[0])
        recipient = sender if rng.random() < 0.9 else self.other_user(sender)
        amount_in, amount_out = self.raw_amount(tin), self.raw_amount(tout)
        deadline = r["block_timestamp"] + rng.choice([60, 300, 1200, 1800])
        args = {"path": path, "to": recipient, "deadline": deadline}
        if exact_in:
            bound = amount_out * (1000 - rng.randint(1, 50)) // 1000
            args["amountOutMin"] = bound
            if eth_in:
                r["value"] = amount_in
            else:
                args["amountIn"] = amount_in
        else:
            bound = amount_in * (1000 + rng.randint(1, 50)) // 1000
            args["amountOut"] = amount_out
            if eth_in:
                r["value"] = bound
            else:
                args["amountInMax"] = bound
        r["to_address"] = V2_ROUTER
        self.call(r, by_name("uniswap_v2_router02", name), args)
        pairs = [self.pair(a, b) for a, b in zip(path, path[1:])]
        self.tt(ctx, WETH if eth_in else tin[0], V2_ROUTER if eth_in else sender, pairs[0], amount_in)
        for i in range(1, len(path) - 1):
            self.tt(ctx, path[i], pairs[i - 1], pairs[i], rng.randint(10**6, 10**20))
        self.tt(ctx, WETH if eth_out else tout[0], pairs[-1], V2_ROUTER if eth_out else recipient, amount_out)
        return self._swap_intent(ctx, "uniswap_v2", sender, recipient, exact_in, eth_in, eth_out, tin, tout,
                                 amount_in, amount_out, bound)

    def _v3_swap(self, r, ctx):
        rng, sender = self.rng, ctx["sender"]
        v02 = rng.random() < 0.5
        router = V3_ROUTER02 if v02 else V3_ROUTER
        fam = "uniswap_v3_swaprouter02" if v02 else "uniswap_v3_swaprouter"
        name = rng.choices(["exactInputSingle", "exactInput", "exactOutputSingle", "exactOutput"],
                           [45, 20, 20, 15])[0]
        exact_in = name.startswith("exactInput")
        weth = self.by_symbol["WETH"]
        u = rng.random()
        eth_in, eth_out = u < 0.25, 0.25 <= u < 0.45
        tin = weth if eth_in else self.token(0.05, exclude=(WETH,))
        tout = weth if eth_out else self.token(0.05, exclude=(WETH, tin[0]))
        amount_in, amount_out = self.raw_amount(tin), self.raw_amount(tout)
        fee = rng.choice([100, 500, 3000, 10000])
        real_recipient = sender if rng.random() < 0.9 else self.other_user(sender)
        if eth_out:
            held = ADDRESS_THIS if v02 else rng.choice([ZERO, V3_ROUTER])
            swap_recipient = held
        elif v02 and real_recipient == sender and rng.random() < 0.3:
            swap_recipient = MSG_SENDER
        else:
            swap_recipient = real_recipient
        bound = (amount_out * (1000 - rng.randint(1, 50)) // 1000) if exact_in \
            else (amount_in * (1000 + rng.randint(1, 50)) // 1000)
        swap_bound = bound
        if eth_out and exact_in and rng.random() < 0.3:
            swap_bound = 0  # bound enforced by unwrapWETH9 instead
        p = {"recipient": swap_recipient}
        if not v02:
            p["deadline"] = r["block_timestamp"] + 1800
        if name.endswith("Single"):
            p.update(tokenIn=tin[0], tokenOut=tout[0], fee=fee, sqrtPriceLimitX96=0)
            path_tokens = [tin[0], tout[0]]
        else:
            mid = self.by_symbol["USDC"] if WETH in (tin[0], tout[0]) else weth
            if mid[0] in (tin[0], tout[0]):
                mid = self.by_symbol["DAI"]
            path_tokens = [tin[0], mid[0], tout[0]]
            fees = [fee, rng.choice([500, 3000])]
            seq = path_tokens if exact_in else path_tokens[::-1]
            f2 = fees if exact_in else fees[::-1]
            packed = bytes.fromhex(seq[0][2:])
            for f, t in zip(f2, seq[1:]):
                packed += f.to_bytes(3, "big") + bytes.fromhex(t[2:])
            p["path"] = packed
        if exact_in:
            p.update(amountIn=amount_in, amountOutMinimum=swap_bound)
        else:
            p.update(amountOut=amount_out, amountInMaximum=bound)
        fn = by_name(fam, name)
        # order params as the ABI does
        p = {c["name"]: p[c["name"]] for c in fn.inputs[0]["components"]}
        if eth_in:
            r["value"] = amount_in if exact_in else bound
        r["to_address"] = router
        inner = [(fn, {"params": p})]
        if eth_out:
            unwrap_min = bound if exact_in else amount_out
            if v02 and (real_recipient == sender) and rng.random() < 0.6:
                inner.append((by_name("uniswap_v3_swaprouter02", "unwrapWETH9", 1), {"amountMinimum": unwrap_min}))
            else:
                inner.append((by_name("uniswap_v3_swaprouter", "unwrapWETH9", 2),
                              {"amountMinimum": unwrap_min, "recipient": real_recipient}))
        if eth_in and not exact_in:
            inner.append((by_name("uniswap_v3_swaprouter", "refundETH"), {}))
        if len(inner) > 1 or rng.random() < self.mix["multicall_p"]:
            calls = [f.encode(a) for f, a in inner]
            if v02:
                mc = by_name("uniswap_v3_swaprouter02", "multicall", 2)
                self.call(r, mc, {"deadline": r["block_timestamp"] + 1800, "data": calls})
            else:
                self.call(r, by_name("uniswap_v3_swaprouter", "multicall"), {"data": calls})
        else:
            self.call(r, fn, {"params": p})
        pools = [self.pair(a, b) + "" for a, b in zip(path_tokens, path_tokens[1:])]
        self.tt(ctx, tin[0], router if eth_in else sender, pools[0], amount_in)
        if len(path_tokens) == 3:
            mid_amt = rng.randint(10**6, 10**20)
            self.tt(ctx, path_tokens[1], pools[0], router, mid_amt)
            self.tt(ctx, path_tokens[1], router, pools[1], mid_amt)
        self.tt(ctx, tout[0], pools[-1], router if eth_out else real_recipient, amount_out)
        return self._swap_intent(ctx, "uniswap_v3", sender, real_recipient, exact_in, eth_in, eth_out, tin, tout,
                                 amount_in, amount_out, bound)

    def _swap_intent(self, ctx, protocol, sender, recipient, exact_in, eth_in, eth_out, tin, tout,
                     amount_in, amount_out, bound):
        """The label a swap must get: the exact side from calldata, the other side only when token
        transfers show it, and the calldata bound (min out / max in)."""
        seen = ctx["with_tt"]
        e_in = self.eobj if eth_in else (lambda raw: self.tobj(tin, raw))
        e_out = self.eobj if eth_out else (lambda raw: self.tobj(tout, raw))
        exp = {"action": "swap", "protocol": protocol, "sender": sender, "recipient": recipient}
        if exact_in:
            exp.update(token_in=e_in(amount_in), token_out=e_out(amount_out if seen else None),
                       amount_out_min=self.amt(tout, bound))
        else:
            exp.update(token_in=e_in(amount_in if seen else None), token_out=e_out(amount_out),
                       amount_in_max=self.amt(tin, bound))
        return exp

    def _nft(self, address, symbol, token_id, amount):
        d = {"symbol": symbol, "address": address, "token_id": str(token_id)}
        if amount is not None:
            d["amount"] = str(amount)
        return d

    def _erc721_transfer(self, r, ctx):
        rng, sender = self.rng, ctx["sender"]
        known = rng.random() < 0.8
        coll, sym = rng.choice(self.nft721) if known else (rng.choice(self.unknown_nfts), None)
        owner = sender if rng.random() < 0.85 else self.other_user(sender)
        to = self.other_user(owner)
        token_id = rng.randrange(10_000) if rng.random() < 0.9 else rng.getrandbits(256)
        variant = rng.choice(["transferFrom", "safe3", "safe4"] if known else ["safe3", "safe4"])
        r["to_address"] = coll
        if variant == "transferFrom":
            self.call(r, by_name("erc20", "transferFrom"), {"from": owner, "to": to, "amount": token_id}, 0.0)
        elif variant == "safe3":
            self.call(r, by_name("erc721", "safeTransferFrom", 3), {"from": owner, "to": to, "tokenId": token_id})
        else:
            self.call(r, by_name("erc721", "safeTransferFrom", 4),
                      {"from": owner, "to": to, "tokenId": token_id, "data": b""})
        self.tt(ctx, coll, owner, to, 1, token_id)
        return {"action": "nft_transfer", "protocol": "erc721", "sender": sender, "from": owner,
                "recipient": to, "token": self._nft(coll, sym, token_id, 1)}

    def _erc1155_transfer(self, r, ctx):
        rng, sender = self.rng, ctx["sender"]
        coll, sym = rng.choice(self.nft1155) if rng.random() < 0.7 else (rng.choice(self.unknown_nfts), None)
        to = self.other_user(sender)
        token_id = rng.getrandbits(256) if coll.startswith("0x495f") else rng.randrange(1, 3000)
        amount = rng.choice([1, 1, 1, 2, 3, 5, 10])
        r["to_address"] = coll
        self.call(r, by_name("erc1155", "safeTransferFrom"),
                  {"from": sender, "to": to, "id": token_id, "amount": amount, "data": b""})
        self.tt(ctx, coll, sender, to, amount, token_id)
        return {"action": "nft_transfer", "protocol": "erc1155", "sender": sender, "from": sender,
                "recipient": to, "token": self._nft(coll, sym, token_id, amount)}

    def _approval_for_all(self, r, ctx):
        rng = self.rng
        u = rng.random()
        if u < 0.6:
            coll, sym, std = *rng.choice(self.nft721), "erc721"
        elif u < 0.8:
            coll, sym, std = *rng.choice(self.nft1155), "erc1155"
        else:
            coll, sym, std = rng.choice(self.unknown_nfts), None, None
        operator = SEAPORT_CONDUIT if rng.random() < 0.7 else rng.choice(self.contracts)
        approved = rng.random() < 0.85
        r["to_address"] = coll
        self.call(r, by_name("erc721", "setApprovalForAll"), {"operator": operator, "approved": approved})
        return {"action": "approve", "protocol": std, "sender": ctx["sender"], "operator": operator,
                "token": {"symbol": sym, "address": coll}, "approved": approved}

    def _add_liquidity(self, r, ctx):
        rng, sender = self.rng, ctx["sender"]
        deadline = r["block_timestamp"] + 1200
        r["to_address"] = V2_ROUTER
        if rng.random() < 0.5:
            a = self.token(0.1)
            b = self.token(0.1, exclude=(a[0],))
            da, db = self.raw_amount(a), self.raw_amount(b)
            ma, mb = da * 995 // 1000, db * 995 // 1000
            self.call(r, by_name("uniswap_v2_router02", "addLiquidity"),
                      {"tokenA": a[0], "tokenB": b[0], "amountADesired": da, "amountBDesired": db,
                       "amountAMin": ma, "amountBMin": mb, "to": sender, "deadline": deadline})
            pair = self.pair(a[0], b[0])
            self.tt(ctx, a[0], sender, pair, da)
            self.tt(ctx, b[0], sender, pair, mb + (db - mb) // 2)
            self.tt(ctx, pair, ZERO, sender, rng.randint(10**15, 10**21))
            return {"action": "add_liquidity", "protocol": "uniswap_v2", "sender": sender, "recipient": sender,
                    "token_a": self.tobj(a, da), "token_b": self.tobj(b, db),
                    "amount_a_min": self.amt(a, ma), "amount_b_min": self.amt(b, mb)}
        a = self.token(0.3, exclude=(WETH,))
        da, de = self.raw_amount(a), self.eth_amount(0.05, 20)
        ma, me = da * 99 // 100, de * 99 // 100
        r["value"] = de
        self.call(r, by_name("uniswap_v2_router02", "addLiquidityETH"),
                  {"token": a[0], "amountTokenDesired": da, "amountTokenMin": ma, "amountETHMin": me,
                   "to": sender, "deadline": deadline})
        pair = self.pair(a[0], WETH)
        self.tt(ctx, a[0], sender, pair, da)
        self.tt(ctx, WETH, V2_ROUTER, pair, de)
        self.tt(ctx, pair, ZERO, sender, rng.randint(10**15, 10**21))
        return {"action": "add_liquidity", "protocol": "uniswap_v2", "sender": sender, "recipient": sender,
                "token_a": self.tobj(a, da), "token_b": self.eobj(de),
                "amount_a_min": self.amt(a, ma), "amount_b_min": dec_str(me, 18)}

    def _remove_liquidity(self, r, ctx):
        rng, sender = self.rng, ctx["sender"]
        deadline = r["block_timestamp"] + 1200
        liquidity = rng.randint(10**12, 10**21)
        r["to_address"] = V2_ROUTER
        seen = ctx["with_tt"]
        if rng.random() < 0.5:
            a = self.token(0.1)
            b = self.token(0.1, exclude=(a[0],))
            oa, ob = self.raw_amount(a), self.raw_amount(b)
            ma, mb = oa * 99 // 100, ob * 99 // 100
            self.call(r, by_name("uniswap_v2_router02", "removeLiquidity"),
                      {"tokenA": a[0], "tokenB": b[0], "liquidity": liquidity, "amountAMin": ma,
                       "amountBMin": mb, "to": sender, "deadline": deadline})
            pair = self.pair(a[0], b[0])
            self.tt(ctx, pair, sender, pair, liquidity)
            self.tt(ctx, a[0], pair, sender, oa)
            self.tt(ctx, b[0], pair, sender, ob)
            return {"action": "remove_liquidity", "protocol": "uniswap_v2", "sender": sender,
                    "recipient": sender, "token_a": self.tobj(a, oa if seen else None),
                    "token_b": self.tobj(b, ob if seen else None), "liquidity": dec_str(liquidity, 18),
                    "amount_a_min": self.amt(a, ma), "amount_b_min": self.amt(b, mb)}
        a = self.token(0.3, exclude=(WETH,))
        oa, oe = self.raw_amount(a), self.eth_amount(0.05, 20)
        ma, me = oa * 99 // 100, oe * 99 // 100
        self.call(r, by_name("uniswap_v2_router02", "removeLiquidityETH"),
                  {"token": a[0], "liquidity": liquidity, "amountTokenMin": ma, "amountETHMin": me,
                   "to": sender, "deadline": deadline})
        pair = self.pair(a[0], WETH)
        self.tt(ctx, pair, sender, pair, liquidity)
        self.tt(ctx, a[0], pair, V2_ROUTER, oa)
        self.tt(ctx, WETH, pair, V2_ROUTER, oe)
        self.tt(ctx, a[0], V2_ROUTER, sender, oa)
        return {"action": "remove_liquidity", "protocol": "uniswap_v2", "sender": sender, "recipient": sender,
                "token_a": self.tobj(a, oa if seen else None), "token_b": self.eobj(oe if seen else None),
                "liquidity": dec_str(liquidity, 18), "amount_a_min": self.amt(a, ma),
                "amount_b_min": dec_str(me, 18)}

    def _contract_creation(self, r, ctx):
        rng = self.rng
        r["input"] = "0x6080604052" + rng.randbytes(rng.randint(40, 160)).hex()
        r["value"] = 0 if rng.random() < 0.9 else self.eth_amount(0.01, 1)
        created = None if ctx["failed"] else _addr(rng.getrandbits(160))
        r["receipt_contract_address"] = created or ""
        r["gas"] = rng.randint(200_000, 3_000_000)
        r["receipt_gas_used"] = r["gas"] * 3 // 4
        ctx["with_tt"] = False
        return {"action": "contract_creation", "protocol": None, "sender": ctx["sender"], "contract": created,
                "value": dec_str(r["value"], 18)}

    def _unknown_call(self, r, ctx):
        rng = self.rng
        to = rng.choice(self.contracts)
        r["to_address"] = to
        exp = {"action": "contract_call", "protocol": None, "sender": ctx["sender"], "contract": to}
        u = rng.random()
        if u < 0.15:  # a bundled name (WETH9 interface) on a non-WETH contract: still contract_call
            if rng.random() < 0.5:
                r["value"] = self.eth_amount(0.01, 5)
                self.call(r, by_name("weth9", "deposit"), {})
                fname = "deposit"
            else:
                self.call(r, by_name("weth9", "withdraw"), {"wad": self.eth_amount(0.01, 5)})
                fname = "withdraw"
            exp.update(function=fname, value=dec_str(r["value"], 18))
            return exp
        if u < 0.3:  # unknown selector, raw bytes only
            r["input"] = "0x" + rng.randbytes(4 + 32 * rng.randint(0, 3)).hex()
            if r["input"][:10] in _known_selectors():
                r["input"] = "0xdeadbeef" + r["input"][10:]
            exp.update(function=r["input"][:10], value="0")
            return exp
        sig, names = rng.choice(UNKNOWN_FUNCTIONS)
        types = sig[sig.index("(") + 1 : -1].split(",") if "()" not in sig else []
        values = []
        for t in types:
            if t == "uint256":
                values.append(rng.randint(1, 10**21))
            elif t == "address":
                values.append(rng.choice([ctx["sender"], self.user()]))
            elif t == "bytes":
                values.append(rng.randbytes(rng.randint(1, 8)))
            else:  # bytes[]
                values.append([rng.randbytes(rng.randint(4, 40)) for _ in range(rng.randint(1, 3))])
        if sig.startswith("execute"):
            r["to_address"] = exp["contract"] = UNIVERSAL_ROUTER
        if sig.startswith("mint") and rng.random() < 0.6:
            r["value"] = self.eth_amount(0.01, 0.5)
        selector = "0x" + function_signature_to_4byte_selector(sig).hex()
        r["input"] = selector + eth_abi.encode(types, values).hex()
        value = dec_str(r["value"], 18)
        if rng.random() < 0.5:
            r["function_signature"] = sig
            r["decoded_input"] = json.dumps(render(dict(zip(names, values))), separators=(",", ":"))
            exp.update(function=sig.split("(")[0], value=value)
            ctx["expected_raw"] = dict(exp, function=selector)
        else:
            exp.update(function=selector, value=value)
        return exp


def _known_selectors():
    from ethsft.eth.abi import functions

    return functions()


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
