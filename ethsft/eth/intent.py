"""Transaction -> structured intent (the training label).

Schema
------
A flat JSON object; keys always in this order (a key absent from an action is
omitted, never null-filled)::

    action, protocol, sender, from, recipient, on_behalf_of, spender, operator,
    contract, function, token, token_in, token_out, token_a, token_b,
    liquidity, price, amount_out_min, amount_in_max, amount_a_min,
    amount_b_min, rate_mode, expiry, approved, value, status

* ``action``: transfer | approve | swap | wrap | unwrap | nft_transfer |
  add_liquidity | remove_liquidity | stake | unstake | supply | withdraw |
  borrow | repay | nft_purchase | nft_sale | contract_creation |
  contract_call.
* ``protocol``: native | erc20 | weth | erc721 | erc1155 | uniswap_v2 |
  uniswap_v3 | uniswap_ur_<pools> (Universal Router; pools ``v2``, ``v3``,
  ``v4`` or several joined by ``+``) | permit2 | 1inch_v5 | 1inch_v6 | lido |
  aave_v3 | seaport | null (contract_call, contract_creation, or a
  setApprovalForAll on a collection whose standard is unknown).  For routers it
  names the ABI family of the decoded call.
* ``sender``: the transaction's ``from``.  ``from``: the owner the tokens move
  from (transferFrom-style calls, the signer of a Permit2 permit, the seller of
  an NFT bought).  ``recipient`` / ``spender`` / ``operator`` /
  ``on_behalf_of``: from the calldata.  ``contract``: the called or created
  contract (contract_call / contract_creation).  ``function``: the function
  name (bundled ABI, a user ABI, or the row's function_signature) or the
  0x-selector.
* Token objects (one level deep)::

      {"symbol": "USDC", "address": "0xa0b8...", "amount": "1.5"}

  ``amount`` is an exact decimal string in human units when the token is in
  the registry (bundled, or a user token list); for an unknown token
  ``symbol`` is null and ``amount`` is the raw integer string.  ETH is
  ``{"symbol": "ETH", "address": null, ...}``.  An ERC-20 approval of
  2**256-1 and a Permit2 approval of 2**160-1 have amount ``"unlimited"``; an
  Aave withdraw / repay of 2**256-1 has amount ``"all"``.  ``amount`` is null
  when it is not known (e.g. the output of an exact-input swap without
  token_transfers).  NFT objects: ``{"symbol", "address", "token_id",
  "amount"}`` (approve: no amount; setApprovalForAll: symbol, address).
* Swaps: ``token_in`` / ``token_out``; the exact side comes from calldata, the
  other side is the actual amount summed from ``token_transfers`` (null when
  there are none, and for native ETH paid out by an aggregator or a V4 pool).
  The calldata bound is ``amount_out_min`` (exact input) or ``amount_in_max``
  (exact output), in the units of that token.  A Universal Router call is one
  swap: its swap commands must share one input and one output token (split and
  multi-hop routes are summed); wraps, unwraps, sweeps, fee portions and
  Permit2 steps shape it.
* Liquidity: ``token_a`` / ``token_b`` (add: desired amounts from calldata;
  remove: actual amounts received, from token_transfers, else null),
  ``amount_a_min`` / ``amount_b_min``, ``liquidity`` (LP tokens, 18 decimals).
* ``expiry`` (Permit2): the allowance's expiration, unix seconds.
  ``rate_mode`` (Aave borrow / repay): variable | stable.  ``price`` (NFT
  purchase / sale): what the sender pays, fees included, or receives, fees
  deducted.
* ``approved`` (setApprovalForAll): true / false.  ``value``: ETH sent
  (contract_call / contract_creation).  ``status``: success | failed.
"""

from __future__ import annotations

import json

from ethsft.eth.errors import RowError
from ethsft.eth.intent_defi import DEFI_FAMILIES, label_defi
from ethsft.eth.intent_values import actual_in as _actual_in
from ethsft.eth.intent_values import actual_out as _actual_out
from ethsft.eth.intent_values import amount as _amount
from ethsft.eth.intent_values import contract_call as _contract_call
from ethsft.eth.intent_values import nft as _nft
from ethsft.eth.intent_values import obj as _obj
from ethsft.eth.registry import WETH, ZERO_ADDRESS, eth, eth_obj, human, nfts, token_obj
from ethsft.eth.tx import Tx, nft_standard, normalize, v3_path

ACTIONS = (
    "transfer", "approve", "swap", "wrap", "unwrap", "nft_transfer",
    "add_liquidity", "remove_liquidity", "stake", "unstake", "supply", "withdraw", "borrow", "repay",
    "nft_purchase", "nft_sale", "contract_creation", "contract_call",
)
KEY_ORDER = (
    "action", "protocol", "sender", "from", "recipient", "on_behalf_of", "spender", "operator", "contract",
    "function", "token", "token_in", "token_out", "token_a", "token_b", "liquidity", "price",
    "amount_out_min", "amount_in_max", "amount_a_min", "amount_b_min", "rate_mode", "expiry", "approved", "value",
    "status",
)
_RANK = {k: i for i, k in enumerate(KEY_ORDER)}
_ADDR1 = "0x" + "00" * 19 + "01"  # SwapRouter02 Constants.MSG_SENDER
_ADDR2 = "0x" + "00" * 19 + "02"  # SwapRouter02 Constants.ADDRESS_THIS


def dumps(intent: dict) -> str:
    """Compact JSON with keys in :data:`KEY_ORDER` (unknown keys last, as given)."""
    ordered = dict(sorted(intent.items(), key=lambda kv: _RANK.get(kv[0], len(_RANK))))
    return json.dumps(ordered, separators=(",", ":"), ensure_ascii=False)


def label(tx: dict | Tx) -> dict:
    """The intent of one transaction row (decoded.csv schema) or a :class:`Tx`.

    Raises :class:`~ethsft.eth.errors.RowError` for rows that cannot be labelled.
    """
    if not isinstance(tx, Tx):
        tx = normalize(tx)
    d = _label(tx)
    d["status"] = "success" if tx.status else "failed"
    return d


# -- labelling ---------------------------------------------------------------

def _label(tx: Tx) -> dict:
    if tx.to is None:
        return {"action": "contract_creation", "protocol": None, "sender": tx.sender,
                "contract": tx.created, "value": eth(tx.value)}
    if not tx.data:
        if tx.to == WETH:  # WETH9's fallback is deposit()
            return _wrap(tx, "wrap", tx.value)
        return {"action": "transfer", "protocol": "native", "sender": tx.sender,
                "recipient": tx.to, "token": eth_obj(tx.value)}
    fn, a = tx.call, tx.args
    if fn is None:
        return _contract_call(tx)
    fam, name = fn.family, fn.name
    if fam in DEFI_FAMILIES:
        return label_defi(tx)
    if fam == "erc20":
        return _erc20(tx, name, a)
    if fam == "weth9":
        if tx.to != WETH:
            return _contract_call(tx)
        return _wrap(tx, "wrap", tx.value) if name == "deposit" else _wrap(tx, "unwrap", a["wad"])
    if fam == "erc721":
        if name == "setApprovalForAll":
            info = nfts().get(tx.to)
            return {"action": "approve", "protocol": info[1] if info else None, "sender": tx.sender,
                    "operator": a["operator"],
                    "token": {"symbol": info[0] if info else None, "address": tx.to},
                    "approved": a["approved"]}
        return {"action": "nft_transfer", "protocol": "erc721", "sender": tx.sender, "from": a["from"],
                "recipient": a["to"], "token": _nft(tx.to, a["tokenId"], 1)}
    if fam == "erc1155":
        return {"action": "nft_transfer", "protocol": "erc1155", "sender": tx.sender, "from": a["from"],
                "recipient": a["to"], "token": _nft(tx.to, a["id"], a["amount"])}
    if fam == "uniswap_v2_router02":
        return _v2(tx, name, a)
    if fam.startswith("uniswap_v3"):
        return _v3(tx)
    return _contract_call(tx)  # a user ABI: the function is named, its intent is not known


def _wrap(tx: Tx, action: str, raw: int) -> dict:
    return {"action": action, "protocol": "weth", "sender": tx.sender,
            "token": {"symbol": "WETH", "address": WETH, "amount": eth(raw)}}


def _erc20(tx: Tx, name: str, a: dict) -> dict:
    if name == "transfer":
        return {"action": "transfer", "protocol": "erc20", "sender": tx.sender,
                "recipient": a["to"], "token": token_obj(tx.to, a["amount"])}
    nft = nft_standard(tx)
    if name == "transferFrom":
        if nft:
            return {"action": "nft_transfer", "protocol": nft, "sender": tx.sender, "from": a["from"],
                    "recipient": a["to"], "token": _nft(tx.to, a["amount"], 1)}
        return {"action": "transfer", "protocol": "erc20", "sender": tx.sender, "from": a["from"],
                "recipient": a["to"], "token": token_obj(tx.to, a["amount"])}
    # approve
    if nft:
        return {"action": "approve", "protocol": nft, "sender": tx.sender, "spender": a["spender"],
                "token": _nft(tx.to, a["amount"], None)}
    return {"action": "approve", "protocol": "erc20", "sender": tx.sender, "spender": a["spender"],
            "token": token_obj(tx.to, a["amount"], unlimited=True)}


def _v2(tx: Tx, name: str, a: dict) -> dict:
    base = {"protocol": "uniswap_v2", "sender": tx.sender, "recipient": a["to"]}
    if name.startswith("swap"):
        path = a["path"]
        if len(path) < 2:
            raise RowError(f"input: {name} path has {len(path)} token(s), a swap needs at least 2")
        tin = None if "ETHFor" in name else path[0]
        tout = None if ("ForETH" in name or "ForExactETH" in name) else path[-1]
        if name.startswith("swapExact"):
            amount_in = tx.value if tin is None else a["amountIn"]
            return {"action": "swap", **base, "token_in": _obj(tin, amount_in),
                    "token_out": _obj(tout, _actual_out(tx, tout, a["to"])),
                    "amount_out_min": _amount(tout, a["amountOutMin"])}
        amount_in_max = tx.value if tin is None else a["amountInMax"]
        return {"action": "swap", **base, "token_in": _obj(tin, _actual_in(tx, tin)),
                "token_out": _obj(tout, a["amountOut"]),
                "amount_in_max": _amount(tin, amount_in_max)}
    if name == "addLiquidity":
        return {"action": "add_liquidity", **base,
                "token_a": token_obj(a["tokenA"], a["amountADesired"]),
                "token_b": token_obj(a["tokenB"], a["amountBDesired"]),
                "amount_a_min": _amount(a["tokenA"], a["amountAMin"]),
                "amount_b_min": _amount(a["tokenB"], a["amountBMin"])}
    if name == "addLiquidityETH":
        return {"action": "add_liquidity", **base,
                "token_a": token_obj(a["token"], a["amountTokenDesired"]), "token_b": eth_obj(tx.value),
                "amount_a_min": _amount(a["token"], a["amountTokenMin"]),
                "amount_b_min": eth(a["amountETHMin"])}
    if name == "removeLiquidity":
        ta, tb = a["tokenA"], a["tokenB"]
        return {"action": "remove_liquidity", **base,
                "token_a": token_obj(ta, _actual_out(tx, ta, a["to"])),
                "token_b": token_obj(tb, _actual_out(tx, tb, a["to"])),
                "liquidity": human(a["liquidity"], 18),
                "amount_a_min": _amount(ta, a["amountAMin"]), "amount_b_min": _amount(tb, a["amountBMin"])}
    # removeLiquidityETH
    t = a["token"]
    return {"action": "remove_liquidity", **base,
            "token_a": token_obj(t, _actual_out(tx, t, a["to"])),
            "token_b": eth_obj(_actual_out(tx, None, a["to"])),
            "liquidity": human(a["liquidity"], 18),
            "amount_a_min": _amount(t, a["amountTokenMin"]), "amount_b_min": eth(a["amountETHMin"])}


_V3_SWAPS = ("exactInputSingle", "exactInput", "exactOutputSingle", "exactOutput")
_V3_EXTRAS = ("unwrapWETH9", "refundETH", "sweepToken")


def _v3(tx: Tx) -> dict:
    fn = tx.call
    if fn.name in _V3_SWAPS:
        return _v3_swap(tx, fn, tx.args, [])
    if fn.name == "multicall":
        swaps, extras = [], []
        for ifn, iargs, _ in tx.inner:
            if ifn is None or not ifn.family.startswith("uniswap_v3"):
                return _contract_call(tx)
            if ifn.name in _V3_SWAPS:
                swaps.append((ifn, iargs))
            elif ifn.name in _V3_EXTRAS:
                extras.append((ifn, iargs))
            else:
                return _contract_call(tx)
        if len(swaps) == 1:
            return _v3_swap(tx, swaps[0][0], swaps[0][1], extras)
    return _contract_call(tx)


def _v3_recipient(tx: Tx, fn, addr: str) -> str | None:
    """Resolve router recipient conventions; None means 'held by the router'."""
    if addr == tx.to:
        return None
    if fn.family == "uniswap_v3_swaprouter":
        return None if addr == ZERO_ADDRESS else addr
    if addr == _ADDR2:
        return None
    return tx.sender if addr == _ADDR1 else addr


def _v3_swap(tx: Tx, fn, a: dict, extras: list) -> dict:
    p = a["params"]
    if fn.name.endswith("Single"):
        tin, tout = p["tokenIn"], p["tokenOut"]
    else:
        path = v3_path(p["path"])
        tin, tout = (path[0], path[-1]) if fn.name == "exactInput" else (path[-1], path[0])
    exact_in = fn.name.startswith("exactInput")
    recipient = _v3_recipient(tx, fn, p["recipient"])
    bound = p["amountOutMinimum"] if exact_in else p["amountInMaximum"]
    if tin == WETH and tx.value > 0:
        tin = None  # paid in ETH, wrapped by the router
    if recipient is None:
        recipient = tx.to
        for efn, ea in extras:
            if efn.name == "unwrapWETH9" and tout == WETH:
                tout = None
            elif not (efn.name == "sweepToken" and ea["token"] == tout):
                continue
            r = ea.get("recipient", _ADDR1)
            recipient = tx.sender if r == _ADDR1 and efn.family.endswith("02") else r
            if exact_in:
                bound = max(bound, ea["amountMinimum"])
            break
    base = {"action": "swap", "protocol": "uniswap_v3", "sender": tx.sender, "recipient": recipient}
    if exact_in:
        return {**base, "token_in": _obj(tin, p["amountIn"]),
                "token_out": _obj(tout, _actual_out(tx, tout, recipient)),
                "amount_out_min": _amount(tout, bound)}
    return {**base, "token_in": _obj(tin, _actual_in(tx, tin)), "token_out": _obj(tout, p["amountOut"]),
            "amount_in_max": _amount(tin, bound)}
