"""The DEX scenarios of :mod:`ethsft.eth.synth`: Uniswap V2 router swaps (every variant in ``V2_SWAPS``), Uniswap
V3 swaps (SwapRouter and SwapRouter02, single and multi-hop, optionally in multicall) and V2 liquidity added or
removed. Each ``_<kind>`` fills the row and returns the expected intent; ``_swap_intent`` is the label a swap gets."""

from __future__ import annotations

from ethsft.eth.abi import by_name
from ethsft.eth.registry import WETH
from ethsft.eth.synth_draws import ADDRESS_THIS, MSG_SENDER, V2_ROUTER, V3_ROUTER, V3_ROUTER02, ZERO, Draws, dec_str

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


class DexScenarios(Draws):
    """Uniswap V2/V3 swaps and V2 liquidity."""

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
