"""Today's-mainnet scenarios of :mod:`ethsft.eth.synth`: Uniswap Universal Router swaps (V2, V3 and V4
pools; ETH in or out; Permit2 permits, fee portions and sweeps), Permit2 approvals, 1inch swaps, Lido
staking (submit, wstETH wrap / unwrap, withdrawal requests), Aave v3 pool calls and Seaport trades.
Each ``_<kind>`` fills the row (calldata with eth-abi, token transfers that match) and returns the
expected intent, built from the scenario's own choices (amounts via :mod:`decimal`)."""

from __future__ import annotations

import eth_abi

from ethsft.eth.abi import by_name, functions
from ethsft.eth.registry import WETH
from ethsft.eth.synth_draws import ADDRESS_THIS, MSG_SENDER, ZERO, Draws
from ethsft.eth.universal_router import COMMANDS, CONTRACT_BALANCE, V4_ACTIONS

UR_V12 = "0x3fc91a3afd70395cd496c647d5a6cc9d4b2b7fad"
UR_V2 = "0x66a9893cc07d91d95644aedd05d03f95e1dba8af"
POOL_MANAGER = "0x000000000004444c5dc75cb358380d2e3de08a90"
PERMIT2 = "0x000000000022d473030f116ddee9f6b43ac78ba3"
ONEINCH = {"oneinch_v5": "0x1111111254eeb25477b68fb85ed929f73a960582",
           "oneinch_v6": "0x111111125421ca6dc452d289314280a0f8842a65"}
ETH_SENTINEL = "0x" + "ee" * 20
STETH = "0xae7ab96520de3a18e5e111b5eaab095312d7fe84"
WSTETH = "0x7f39c581f595b53c5cb19bd0b3f8da6c935e2ca0"
WITHDRAWAL_QUEUE = "0x889edc2edab5f40e902b864ad4d7ade8e412f9b1"
AAVE_POOL = "0x87870bca3f3fd6335c3f4ce8392d69350b4fa4e2"
SEAPORT = ("0x0000000000000068f116a894984e2db1123eb395", "0x00000000000000adc04c56bf30ac9d3c0aaf14dc")
OPENSEA_FEE = "0x0000a26b00c1f0df003000390027140000faa719"
UINT160_MAX = 2**160 - 1
MAX_UINT = 2**256 - 1


def _cmd(code: int, *values) -> bytes:
    return eth_abi.encode([t for _, t in COMMANDS[code][1]], list(values))


def _action(code: int, *values) -> bytes:
    return eth_abi.encode([t for _, t in V4_ACTIONS[code][1]], list(values))


def _v3_path(tokens: list, fees: list) -> bytes:
    out = bytes.fromhex(tokens[0][2:])
    for fee, t in zip(fees, tokens[1:]):
        out += fee.to_bytes(3, "big") + bytes.fromhex(t[2:])
    return out


class DefiScenarios(Draws):
    """Universal Router, Permit2, 1inch, Lido, Aave v3 and Seaport."""

    def _swap_tokens(self, eth_in_p: float, eth_out_p: float):
        """(eth_in, eth_out, token in, token out, amount in, amount out) of a swap: WETH stands for ETH."""
        u = self.rng.random()
        eth_in, eth_out = u < eth_in_p, eth_in_p <= u < eth_in_p + eth_out_p
        weth = self.by_symbol["WETH"]
        tin = weth if eth_in else self.token(0.1, exclude=(WETH,))
        tout = weth if eth_out else self.token(0.1, exclude=(WETH, tin[0]))
        return eth_in, eth_out, tin, tout, self.raw_amount(tin), self.raw_amount(tout)

    def _bound(self, raw: int, exact_in: bool) -> int:
        slip = self.rng.randint(1, 50)
        return raw * (1000 - slip) // 1000 if exact_in else raw * (1000 + slip) // 1000

    # -- Universal Router ----------------------------------------------------
    def _ur_swap(self, r, ctx):
        rng, sender = self.rng, ctx["sender"]
        router = UR_V2 if rng.random() < 0.6 else UR_V12
        version = rng.choices(["v2", "v3", "v4"], [3, 5, 3 if router == UR_V2 else 0])[0]
        exact_in = rng.random() < 0.8
        eth_in, eth_out, tin, tout, amount_in, amount_out = self._swap_tokens(0.35, 0.25)
        bound = self._bound(amount_out if exact_in else amount_in, exact_in)
        recipient = sender if rng.random() < 0.92 else self.other_user(sender)
        fee = not eth_out and exact_in and rng.random() < 0.2  # an interface fee taken from the output
        fee_raw = amount_out * 25 // 10000 if fee else 0
        commands, inputs = [], []

        def add(code, data):
            commands.append(code)
            inputs.append(data)

        if not eth_in and rng.random() < 0.4:
            details = (tin[0], UINT160_MAX, r["block_timestamp"] + 30 * 86400, rng.randrange(20))
            add(0x0A, _cmd(0x0A, (details, router, r["block_timestamp"] + 1800), rng.randbytes(65)))
        native_v4 = version == "v4"
        if eth_in:
            r["value"] = amount_in if exact_in else bound
            if not native_v4:
                add(0x0B, _cmd(0x0B, ADDRESS_THIS, r["value"]))
        held = eth_out or fee  # the router takes the output, then unwraps / pays the fee and sweeps
        to = ADDRESS_THIS if held else (MSG_SENDER if recipient == sender and rng.random() < 0.8 else recipient)
        payer_is_user = not eth_in
        c_in = ZERO if (native_v4 and eth_in) else tin[0]
        c_out = ZERO if (native_v4 and eth_out) else tout[0]
        exact = amount_in if exact_in else amount_out
        if eth_in and exact_in and rng.random() < 0.3:
            exact = CONTRACT_BALANCE  # spend what WRAP_ETH left in the router
        if version == "v2":
            path = [tin[0], tout[0]]
            code = 0x08 if exact_in else 0x09
            add(code, _cmd(code, to, exact, bound, path, payer_is_user))
        elif version == "v3":
            fee_tier = rng.choice([100, 500, 3000, 10000])
            tokens = [tin[0], tout[0]]
            path = _v3_path(tokens if exact_in else tokens[::-1], [fee_tier])
            code = 0x00 if exact_in else 0x01
            add(code, _cmd(code, to, exact, bound, path, payer_is_user))
        else:
            c0, c1 = sorted((c_in, c_out))
            key = (c0, c1, rng.choice([500, 3000]), rng.choice([10, 60]), ZERO)
            zero_for_one = c_in == c0
            code = 0x06 if exact_in else 0x08
            swap = _action(code, (key, zero_for_one, amount_in if exact_in else amount_out, bound, b""))
            settle = _action(0x0C, c_in, amount_in if exact_in else bound)
            if held and not eth_out:
                take = (0x0E, _action(0x0E, c_out, ADDRESS_THIS, 0))
            elif to in (MSG_SENDER, sender) and not held:
                take = (0x0F, _action(0x0F, c_out, amount_out if not exact_in else bound))
            else:
                take = (0x0E, _action(0x0E, c_out, recipient, 0))
            add(0x10, _cmd(0x10, bytes([code, 0x0C, take[0]]), [swap, settle, take[1]]))
        sweep_min = bound
        if fee:
            add(0x06, _cmd(0x06, tout[0], OPENSEA_FEE, 25))
            sweep_min = bound - bound * 25 // 10000
            add(0x04, _cmd(0x04, tout[0], MSG_SENDER if recipient == sender else recipient, sweep_min))
        unwrap_min = 0
        if eth_out and not native_v4:
            unwrap_min = bound if rng.random() < 0.7 else 0
            add(0x0C, _cmd(0x0C, MSG_SENDER if recipient == sender else recipient, unwrap_min))
        elif eth_out:  # V4 took native ETH to the router: sweep it
            add(0x04, _cmd(0x04, ZERO, MSG_SENDER if recipient == sender else recipient, 0))
        if eth_in and not exact_in and not native_v4:
            add(0x0C, _cmd(0x0C, MSG_SENDER, 0))  # refund what was not spent
        r["to_address"] = router
        fn = by_name("universal_router", "execute", 3 if rng.random() < 0.85 else 2)
        args = {"commands": bytes(commands), "inputs": inputs}
        if len(fn.inputs) == 3:
            args["deadline"] = r["block_timestamp"] + 1800
        self.call(r, fn, args, decoded_p=0.0)
        # token transfers: V4 settles with the pool manager, V2 / V3 pay a pool
        pool = POOL_MANAGER if native_v4 else self.pair(tin[0], tout[0])
        if not (native_v4 and eth_in):
            self.tt(ctx, tin[0], router if eth_in else sender, pool, amount_in)
        if not (native_v4 and eth_out):
            self.tt(ctx, tout[0], pool, router if held else recipient, amount_out)
            if fee:
                self.tt(ctx, tout[0], router, OPENSEA_FEE, fee_raw)
                self.tt(ctx, tout[0], router, recipient, amount_out - fee_raw)
        seen = ctx["with_tt"]
        e_in = self.eobj if eth_in else (lambda raw: self.tobj(tin, raw))
        e_out = self.eobj if eth_out else (lambda raw: self.tobj(tout, raw))
        exp = {"action": "swap", "protocol": "uniswap_ur_" + version, "sender": sender, "recipient": recipient}
        if exact_in:
            got = None if not seen or (native_v4 and eth_out) else (amount_out - fee_raw)
            exp.update(token_in=e_in(amount_in), token_out=e_out(got),
                       amount_out_min=self.amt(tout, max(bound, unwrap_min, sweep_min if fee else 0)))
        else:
            paid = None if not seen or (native_v4 and eth_in) else amount_in
            exp.update(token_in=e_in(paid), token_out=e_out(amount_out), amount_in_max=self.amt(tin, bound))
        return exp

    # -- Permit2 -------------------------------------------------------------
    def _permit2_approve(self, r, ctx):
        rng, sender = self.rng, ctx["sender"]
        tok = self.token(0.1)
        unlimited = rng.random() < 0.7
        raw = UINT160_MAX if unlimited else self.raw_amount(tok)
        spender = rng.choice([UR_V2, UR_V12, rng.choice(self.contracts)])
        expiry = r["block_timestamp"] + rng.choice([0, 86400, 30 * 86400, 365 * 86400])
        r["to_address"] = PERMIT2
        token = self.tobj(tok, raw)
        if unlimited:
            token["amount"] = "unlimited"
        exp = {"action": "approve", "protocol": "permit2", "sender": sender}
        if rng.random() < 0.75:
            self.call(r, by_name("permit2", "approve"),
                      {"token": tok[0], "spender": spender, "amount": raw, "expiration": expiry}, decoded_p=0.3)
            return {**exp, "spender": spender, "token": token, "expiry": str(expiry)}
        owner = sender if rng.random() < 0.6 else self.other_user(sender)  # relayed permits: someone else's
        permit = {"details": {"token": tok[0], "amount": raw, "expiration": expiry, "nonce": rng.randrange(50)},
                  "spender": spender, "sigDeadline": r["block_timestamp"] + 1800}
        self.call(r, _permit_single(), {"owner": owner, "permitSingle": permit, "signature": rng.randbytes(65)},
                  decoded_p=0.0)
        return {**exp, "from": owner, "spender": spender, "token": token, "expiry": str(expiry)}

    # -- 1inch ---------------------------------------------------------------
    def _aggregator_swap(self, r, ctx):
        rng, sender = self.rng, ctx["sender"]
        family = "oneinch_v6" if rng.random() < 0.6 else "oneinch_v5"
        router = ONEINCH[family]
        eth_in, eth_out, tin, tout, amount_in, amount_out = self._swap_tokens(0.3, 0.2)
        min_out = self._bound(amount_out, True)
        recipient = sender if rng.random() < 0.9 else self.other_user(sender)
        executor = rng.choice(self.contracts[:8])
        desc = {"srcToken": ETH_SENTINEL if eth_in else tin[0], "dstToken": ETH_SENTINEL if eth_out else tout[0],
                "srcReceiver": executor, "dstReceiver": recipient if rng.random() < 0.8 or recipient != sender
                else ZERO, "amount": amount_in, "minReturnAmount": min_out, "flags": rng.choice([0, 4])}
        args = {"executor": executor, "desc": desc, "data": rng.randbytes(rng.randint(64, 400))}
        if family == "oneinch_v5":
            args["permit"] = b""
        if eth_in:
            r["value"] = amount_in
        r["to_address"] = router
        self.call(r, by_name(family, "swap"), args, decoded_p=0.0)
        if not eth_in:
            self.tt(ctx, tin[0], sender, executor, amount_in)
        if not eth_out:
            self.tt(ctx, tout[0], executor, recipient, amount_out)
        got = amount_out if ctx["with_tt"] and not eth_out else None
        return {"action": "swap", "protocol": "1inch_" + family[-2:], "sender": sender, "recipient": recipient,
                "token_in": self.eobj(amount_in) if eth_in else self.tobj(tin, amount_in),
                "token_out": self.eobj(None) if eth_out else self.tobj(tout, got),
                "amount_out_min": self.amt(tout, min_out)}

    # -- Lido ----------------------------------------------------------------
    def _lido_stake(self, r, ctx):
        value = self.eth_amount(0.01, 32)
        r["to_address"], r["value"] = STETH, value
        referral = ZERO if self.rng.random() < 0.7 else self.rng.choice(self.contracts)
        self.call(r, by_name("lido", "submit"), {"_referral": referral}, decoded_p=0.3)
        self.tt(ctx, STETH, ZERO, ctx["sender"], value - 1)
        return {"action": "stake", "protocol": "lido", "sender": ctx["sender"], "token": self.eobj(value)}

    def _lido_wrap(self, r, ctx):
        wrap = self.rng.random() < 0.55
        tok = self.by_symbol["stETH" if wrap else "wstETH"]
        raw = self.raw_amount(tok)
        r["to_address"] = WSTETH
        fn = by_name("wsteth", "wrap" if wrap else "unwrap")
        self.call(r, fn, {fn.inputs[0]["name"]: raw}, decoded_p=0.3)
        return {"action": "wrap" if wrap else "unwrap", "protocol": "lido", "sender": ctx["sender"],
                "token": self.tobj(tok, raw)}

    def _lido_unstake(self, r, ctx):
        rng, sender = self.rng, ctx["sender"]
        wst = rng.random() < 0.3
        tok = self.by_symbol["wstETH" if wst else "stETH"]
        amounts = [self.raw_amount(tok) for _ in range(rng.choice([1, 1, 1, 2, 3]))]
        owner = ZERO if rng.random() < 0.5 else sender
        r["to_address"] = WITHDRAWAL_QUEUE
        self.call(r, by_name("lido_withdrawal_queue", "requestWithdrawalsWstETH" if wst else "requestWithdrawals"),
                  {"_amounts": amounts, "_owner": owner}, decoded_p=0.3)
        return {"action": "unstake", "protocol": "lido", "sender": sender, "recipient": sender,
                "token": self.tobj(tok, sum(amounts))}

    # -- Aave v3 -------------------------------------------------------------
    def _aave(self, r, ctx):
        rng, sender = self.rng, ctx["sender"]
        name = rng.choices(["supply", "withdraw", "borrow", "repay"], [40, 25, 20, 15])[0]
        tok = self.by_symbol[rng.choice(["USDC", "USDT", "WETH", "DAI", "WBTC", "wstETH", "LINK"])]
        everything = name in ("withdraw", "repay") and rng.random() < 0.3
        raw = MAX_UINT if everything else self.raw_amount(tok)
        who = sender if rng.random() < 0.95 else self.other_user(sender)
        args = {"asset": tok[0], "amount": raw}
        if name == "supply":
            args.update(onBehalfOf=who, referralCode=0)
        elif name == "withdraw":
            args["to"] = who
        elif name == "borrow":
            args.update(interestRateMode=2, referralCode=0, onBehalfOf=who)
        else:
            args.update(interestRateMode=2, onBehalfOf=who)
        r["to_address"] = AAVE_POOL
        self.call(r, by_name("aave_v3_pool", name), args, decoded_p=0.3)
        token = self.tobj(tok, raw)
        if everything:
            token["amount"] = "all"
        exp = {"action": name, "protocol": "aave_v3", "sender": sender}
        if name == "withdraw":
            return {**exp, "recipient": who, "token": token}
        exp.update(on_behalf_of=who, token=token)
        if name != "supply":
            exp["rate_mode"] = "variable"
        return exp

    # -- Seaport -------------------------------------------------------------
    def _seaport(self, r, ctx):
        """A listing bought with ETH (or WETH), or, in about a third of the trades, a collection offer
        accepted: the sender sells an NFT for WETH, fees taken from the proceeds."""
        rng, sender = self.rng, ctx["sender"]
        coll, sym = rng.choice(self.nft721) if rng.random() < 0.7 else (rng.choice(self.unknown_nfts), None)
        token_id = rng.randrange(10_000)
        other = self.other_user(sender)
        sale = rng.random() < 0.3
        with_weth = sale or rng.random() < 0.1
        price = self.raw_amount_range(0.005, 40, 18)
        fees = [price * 25 // 1000] + ([price * 5 // 100] if rng.random() < 0.5 else [])
        recipients = [OPENSEA_FEE] + [rng.choice(self.contracts)] * (len(fees) - 1)
        nft_side = {"Token": coll, "Identifier": token_id, "Amount": 1}
        pay_side = {"Token": WETH if with_weth else ZERO, "Identifier": 0,
                    "Amount": price if sale else price - sum(fees)}
        offer, consideration = (pay_side, nft_side) if sale else (nft_side, pay_side)
        params = {
            **{"consideration" + k: v for k, v in consideration.items()}, "offerer": other, "zone": ZERO,
            **{"offer" + k: v for k, v in offer.items()},
            "basicOrderType": (16 if sale else 8 if with_weth else 0) + rng.randrange(4),
            "startTime": r["block_timestamp"] - 86400, "endTime": r["block_timestamp"] + 30 * 86400,
            "zoneHash": b"\x00" * 32, "salt": rng.getrandbits(256), "offererConduitKey": b"\x00" * 32,
            "fulfillerConduitKey": b"\x00" * 32, "totalOriginalAdditionalRecipients": len(fees),
            "additionalRecipients": [{"amount": a, "recipient": x} for a, x in zip(fees, recipients)],
            "signature": rng.randbytes(65)}
        fn = by_name("seaport", "fulfillBasicOrder_efficient_6GL6yc" if rng.random() < 0.6 else "fulfillBasicOrder")
        params = {c["name"]: params[c["name"]] for c in fn.inputs[0]["components"]}
        if not with_weth:
            r["value"] = price
        r["to_address"] = rng.choice(SEAPORT)
        self.call(r, fn, {"parameters": params}, decoded_p=0.0)
        nft = {"symbol": sym, "address": coll, "token_id": str(token_id), "amount": "1"}
        weth = self.by_symbol["WETH"]
        if sale:
            self.tt(ctx, coll, sender, other, 1, token_id)
            return {"action": "nft_sale", "protocol": "seaport", "sender": sender, "recipient": other, "token": nft,
                    "price": self.tobj(weth, price - sum(fees))}
        self.tt(ctx, coll, other, sender, 1, token_id)
        return {"action": "nft_purchase", "protocol": "seaport", "sender": sender, "from": other,
                "recipient": sender, "token": nft, "price": self.tobj(weth, price) if with_weth else self.eobj(price)}


def _permit_single():
    """Permit2's ``permit`` for one token (its batch overload has the same name and arity)."""
    return functions()["0x2b67b570"][0]
