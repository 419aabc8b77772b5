"""The scenarios of :mod:`ethsft.eth.synth` other than DEX trades: native and ERC-20 transfers, approvals, WETH
wrap/unwrap, NFT transfers and operator approvals, contract creations and calls to unknown contracts
(``UNKNOWN_FUNCTIONS``: signatures not in the bundled ABIs). Each ``_<kind>`` fills the row and returns the
expected intent."""

from __future__ import annotations

import json

import eth_abi
from eth_utils import function_signature_to_4byte_selector

from ethsft.eth.abi import by_name, render
from ethsft.eth.registry import WETH
from ethsft.eth.synth_draws import (
    MAX_UINT, SEAPORT_CONDUIT, UNIVERSAL_ROUTER, V2_ROUTER, V3_ROUTER, V3_ROUTER02, Draws, _addr, dec_str,
)

UNKNOWN_FUNCTIONS = [  # (signature, arg names) not in the bundled ABIs
    ("stake(uint256)", ["amount"]),
    ("claim()", []),
    ("mint(uint256)", ["quantity"]),
    ("deposit(uint256,address)", ["assets", "receiver"]),
    ("redeem(uint256,address,address)", ["shares", "receiver", "owner"]),
    ("execute(bytes,bytes[],uint256)", ["commands", "inputs", "deadline"]),
]


class TransferScenarios(Draws):
    """Transfers, approvals, wrapping, NFTs, contract creations and unknown calls."""

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
        # a signature the bundled ABIs now know (the Universal Router's execute) is named from calldata;
        # its random commands are no swap, so it stays a contract_call
        bundled = selector in _known_selectors()
        if rng.random() < 0.5:
            r["function_signature"] = sig
            r["decoded_input"] = json.dumps(render(dict(zip(names, values))), separators=(",", ":"))
            exp.update(function=sig.split("(")[0], value=value)
            if not bundled:
                ctx["expected_raw"] = dict(exp, function=selector)
        else:
            exp.update(function=sig.split("(")[0] if bundled else selector, value=value)
        return exp


def _known_selectors():
    from ethsft.eth.abi import functions

    return functions()
