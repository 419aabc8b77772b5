"""Labels: bundled ABIs, exact hand-checked intents, and synth round trips per action."""

import json

import pytest

from ethsft.eth.abi import by_name, functions
from ethsft.eth.errors import RowError
from ethsft.eth.intent import ACTIONS, KEY_ORDER, dumps, label
from ethsft.eth.registry import human, tokens
from ethsft.eth.synth import generate_rows
from ethsft.eth.tx import model_input, normalize

U = "0x" + "11" * 20
V = "0x" + "22" * 20
POOL = "0x" + "33" * 20
USDT = "0xdac17f958d2ee523a2206206994597c13d831ec7"
USDC = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
WETH = "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
V2 = "0x7a250d5630b4cf539739df2c5dacb4c659f2488d"
V3 = "0xe592427a0aece92de3edee1f18e0157c05861564"
V302 = "0x68b3465833fb72a70ecdf485e0e4c7bd8665fc45"
BAYC = "0xbc4ca0eda7647a8ab7c2061c2e118a18a936f13d"


def row(to, data="0x", value="0", status="1", tt="", **extra):
    return dict(hash="0x" + "ab" * 32, block_number="18000000", from_address=U, to_address=to, value=value,
                input=data, receipt_status=status, token_transfers=tt, **extra)


def call(family, name, args, n=None):
    return "0x" + by_name(family, name, n).encode(args).hex()


def transfers(*items):
    return json.dumps([dict(token_address=t, from_address=f, to_address=r, value=str(v)) for t, f, r, v in items])


def test_bundled_selectors_are_the_real_ones():
    names = {f.selector: f"{f.family}.{f.name}" for fs in functions().values() for f in fs}
    assert len(names) == 57
    for sel, name in {
        "0xa9059cbb": "erc20.transfer", "0x23b872dd": "erc20.transferFrom", "0x095ea7b3": "erc20.approve",
        "0xd0e30db0": "weth9.deposit", "0x2e1a7d4d": "weth9.withdraw",
        "0x42842e0e": "erc721.safeTransferFrom", "0xb88d4fde": "erc721.safeTransferFrom",
        "0xa22cb465": "erc721.setApprovalForAll", "0xf242432a": "erc1155.safeTransferFrom",
        "0x38ed1739": "uniswap_v2_router02.swapExactTokensForTokens",
        "0x7ff36ab5": "uniswap_v2_router02.swapExactETHForTokens",
        "0x18cbafe5": "uniswap_v2_router02.swapExactTokensForETH",
        "0xfb3bdb41": "uniswap_v2_router02.swapETHForExactTokens",
        "0xb6f9de95": "uniswap_v2_router02.swapExactETHForTokensSupportingFeeOnTransferTokens",
        "0xe8e33700": "uniswap_v2_router02.addLiquidity", "0xf305d719": "uniswap_v2_router02.addLiquidityETH",
        "0xbaa2abde": "uniswap_v2_router02.removeLiquidity",
        "0x02751cec": "uniswap_v2_router02.removeLiquidityETH",
        "0x414bf389": "uniswap_v3_swaprouter.exactInputSingle", "0xc04b8d59": "uniswap_v3_swaprouter.exactInput",
        "0xdb3e2198": "uniswap_v3_swaprouter.exactOutputSingle", "0xf28c0498": "uniswap_v3_swaprouter.exactOutput",
        "0xac9650d8": "uniswap_v3_swaprouter.multicall", "0x5ae401dc": "uniswap_v3_swaprouter02.multicall",
        "0x04e45aaf": "uniswap_v3_swaprouter02.exactInputSingle",
        "0x3593564c": "universal_router.execute", "0x24856bc3": "universal_router.execute",
        "0x87517c45": "permit2.approve", "0x2b67b570": "permit2.permit", "0x2a2d80d1": "permit2.permit",
        "0x12aa3caf": "oneinch_v5.swap", "0x07ed2379": "oneinch_v6.swap", "0xa1903eab": "lido.submit",
        "0xea598cb0": "wsteth.wrap", "0xde0e9a3e": "wsteth.unwrap",
        "0xd6681042": "lido_withdrawal_queue.requestWithdrawals",
        "0x19aa6257": "lido_withdrawal_queue.requestWithdrawalsWstETH",
        "0x617ba037": "aave_v3_pool.supply", "0x69328dec": "aave_v3_pool.withdraw",
        "0xa415bcad": "aave_v3_pool.borrow", "0x573ade81": "aave_v3_pool.repay",
        "0xfb0f3ee1": "seaport.fulfillBasicOrder", "0x00000000": "seaport.fulfillBasicOrder_efficient_6GL6yc",
        "0xe7acab24": "seaport.fulfillAdvancedOrder",
    }.items():
        assert names[sel] == name


def test_registry_has_the_main_tokens_with_their_decimals():
    by_symbol = {s: (a, d) for a, (s, d) in tokens().items()}
    assert len(by_symbol) == 40
    assert by_symbol["USDC"] == (USDC, 6)
    assert by_symbol["USDT"] == (USDT, 6)
    assert by_symbol["WBTC"] == ("0x2260fac5e5542a773aa44fbcfedf7c193bc2c599", 8)
    assert by_symbol["GUSD"] == ("0x056fd409e1d7a124bd7017459dfea2f387b6d5cd", 2)
    assert by_symbol["WETH"] == (WETH, 18)


def test_human_amounts_are_exact():
    assert human(1_500_000, 6) == "1.5"
    assert human(10**18, 18) == "1"
    assert human(1, 18) == "0.000000000000000001"
    assert human(0, 6) == "0"
    assert human(123456789012345678901234567890, 18) == "123456789012.34567890123456789"
    assert human(5, 2) == "0.05"
    assert human(7, 0) == "7"


def test_erc20_transfer_exact_json():
    r = row(USDT, call("erc20", "transfer", {"to": V, "amount": 1_500_000}))
    assert dumps(label(r)) == (
        '{"action":"transfer","protocol":"erc20","sender":"0x1111111111111111111111111111111111111111",'
        '"recipient":"0x2222222222222222222222222222222222222222","token":{"symbol":"USDT",'
        '"address":"0xdac17f958d2ee523a2206206994597c13d831ec7","amount":"1.5"},"status":"success"}'
    )
    assert json.dumps(model_input(normalize(r)), separators=(",", ":")) == (
        '{"from":"0x1111111111111111111111111111111111111111","to":"0xdac17f958d2ee523a2206206994597c13d831ec7",'
        '"function":"transfer","args":{"to":"0x2222222222222222222222222222222222222222","amount":"1500000"},'
        '"status":"success"}'
    )


def test_unknown_token_keeps_address_and_raw_amount():
    tok = "0x" + "44" * 20
    got = label(row(tok, call("erc20", "transfer", {"to": V, "amount": 123}), status="0"))
    assert got["token"] == {"symbol": None, "address": tok, "amount": "123"}
    assert got["status"] == "failed"


def test_unlimited_approval_and_mixed_case_input():
    data = call("erc20", "approve", {"spender": V2, "amount": 2**256 - 1})
    got = label(row(USDC.upper().replace("0X", "0x"), data.upper().replace("0X", "0x")))
    assert got == {"action": "approve", "protocol": "erc20", "sender": U, "spender": V2,
                   "token": {"symbol": "USDC", "address": USDC, "amount": "unlimited"}, "status": "success"}


def test_native_transfer_and_weth_fallback_and_deposit_elsewhere():
    assert label(row(V, value=str(25 * 10**17))) == {
        "action": "transfer", "protocol": "native", "sender": U, "recipient": V,
        "token": {"symbol": "ETH", "address": None, "amount": "2.5"}, "status": "success"}
    assert label(row(WETH, value=str(10**17)))["action"] == "wrap"
    assert label(row(WETH, call("weth9", "withdraw", {"wad": 3 * 10**17}))) == {
        "action": "unwrap", "protocol": "weth", "sender": U,
        "token": {"symbol": "WETH", "address": WETH, "amount": "0.3"}, "status": "success"}
    # deposit() on another contract is not a wrap: no guess
    assert label(row(V, call("weth9", "deposit", {}), value="5")) == {
        "action": "contract_call", "protocol": None, "sender": U, "contract": V, "function": "deposit",
        "value": "0.000000000000000005", "status": "success"}


def test_unknown_selector_is_contract_call_with_selector_or_given_name():
    r = row(V, "0xa0712d68" + "00" * 31 + "05")
    assert label(r)["function"] == "0xa0712d68"
    r["function_signature"] = "mint(uint256 quantity)"
    r["decoded_input"] = '{"quantity":"5"}'
    assert label(r) == {"action": "contract_call", "protocol": None, "sender": U, "contract": V,
                        "function": "mint", "value": "0", "status": "success"}
    assert model_input(normalize(r))["args"] == {"quantity": "5"}


def test_v2_swap_exact_eth_for_tokens_with_actual_out():
    data = call("uniswap_v2_router02", "swapExactETHForTokens",
                {"amountOutMin": 1_990_000_000, "path": [WETH, USDC], "to": U, "deadline": 1_700_000_000})
    tt = transfers((WETH, V2, POOL, 10**18), (USDC, POOL, U, 2_012_345_678))
    assert dumps(label(row(V2, data, value=str(10**18), tt=tt))) == (
        '{"action":"swap","protocol":"uniswap_v2","sender":"0x1111111111111111111111111111111111111111",'
        '"recipient":"0x1111111111111111111111111111111111111111","token_in":{"symbol":"ETH","address":null,'
        '"amount":"1"},"token_out":{"symbol":"USDC","address":"0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48",'
        '"amount":"2012.345678"},"amount_out_min":"1990","status":"success"}'
    )
    # without token_transfers the actual output is unknown: null, never a guess
    assert label(row(V2, data, value=str(10**18)))["token_out"]["amount"] is None


def test_v2_swap_tokens_for_exact_eth_actual_in_and_bound():
    data = call("uniswap_v2_router02", "swapTokensForExactETH",
                {"amountOut": 5 * 10**17, "amountInMax": 1_010_000_000, "path": [USDT, WETH], "to": V,
                 "deadline": 1})
    tt = transfers((USDT, U, POOL, 1_000_500_000), (WETH, POOL, V2, 5 * 10**17))
    got = label(row(V2, data, tt=tt))
    assert got == {"action": "swap", "protocol": "uniswap_v2", "sender": U, "recipient": V,
                   "token_in": {"symbol": "USDT", "address": USDT, "amount": "1000.5"},
                   "token_out": {"symbol": "ETH", "address": None, "amount": "0.5"},
                   "amount_in_max": "1010", "status": "success"}


def test_v3_multicall_exact_input_to_eth_uses_unwrap_recipient_and_bound():
    fn = by_name("uniswap_v3_swaprouter", "exactInputSingle")
    swap = fn.encode({"params": {"tokenIn": USDC, "tokenOut": WETH, "fee": 500, "recipient": "0x" + "00" * 20,
                                 "deadline": 1, "amountIn": 3_000_000_000, "amountOutMinimum": 0,
                                 "sqrtPriceLimitX96": 0}})
    unwrap = by_name("uniswap_v3_swaprouter", "unwrapWETH9").encode({"amountMinimum": 10**18, "recipient": V})
    data = call("uniswap_v3_swaprouter", "multicall", {"data": [swap, unwrap]})
    tt = transfers((USDC, U, POOL, 3_000_000_000), (WETH, POOL, V3, 1_020_000_000_000_000_000))
    assert label(row(V3, data, tt=tt)) == {
        "action": "swap", "protocol": "uniswap_v3", "sender": U, "recipient": V,
        "token_in": {"symbol": "USDC", "address": USDC, "amount": "3000"},
        "token_out": {"symbol": "ETH", "address": None, "amount": "1.02"},
        "amount_out_min": "1", "status": "success"}
    inp = model_input(normalize(row(V3, data, tt=tt)))
    assert inp["function"] == "multicall"
    assert inp["args"]["data"][1] == {"function": "unwrapWETH9",
                                      "args": {"amountMinimum": "1000000000000000000", "recipient": V}}


def test_v3_router02_exact_output_path_is_reversed_and_msg_sender_resolves():
    path = bytes.fromhex(USDC[2:]) + (500).to_bytes(3, "big") + bytes.fromhex(WETH[2:])  # out <- in
    data = call("uniswap_v3_swaprouter02", "exactOutput",
                {"params": {"path": path, "recipient": "0x" + "00" * 19 + "01", "amountOut": 2_500_000_000,
                            "amountInMaximum": 10**18}})
    got = label(row(V302, data, value=str(10**18)))
    assert got["recipient"] == U
    assert got["token_in"] == {"symbol": "ETH", "address": None, "amount": None}
    assert got["token_out"] == {"symbol": "USDC", "address": USDC, "amount": "2500"}
    assert got["amount_in_max"] == "1"
    assert model_input(normalize(row(V302, data)))["args"]["params"]["path"] == [USDC, "500", WETH]


def test_multicall_with_two_swaps_is_not_guessed():
    fn = by_name("uniswap_v3_swaprouter02", "exactInputSingle")
    s = fn.encode({"params": {"tokenIn": USDC, "tokenOut": WETH, "fee": 500, "recipient": U, "amountIn": 1,
                              "amountOutMinimum": 0, "sqrtPriceLimitX96": 0}})
    data = call("uniswap_v3_swaprouter02", "multicall", {"deadline": 5, "data": [s, s]}, 2)
    assert label(row(V302, data))["action"] == "contract_call"
    assert label(row(V302, data))["function"] == "multicall"


def test_nft_transfer_from_known_collection_and_from_transfer_evidence():
    data = call("erc20", "transferFrom", {"from": U, "to": V, "amount": 8817})
    assert label(row(BAYC, data)) == {
        "action": "nft_transfer", "protocol": "erc721", "sender": U, "from": U, "recipient": V,
        "token": {"symbol": "BAYC", "address": BAYC, "token_id": "8817", "amount": "1"}, "status": "success"}
    coll = "0x" + "55" * 20
    tt = json.dumps([{"token_address": coll, "from_address": U, "to_address": V, "value": "1", "token_id": "7"}])
    assert label(row(coll, call("erc20", "transferFrom", {"from": U, "to": V, "amount": 7}), tt=tt))["action"] \
        == "nft_transfer"
    assert model_input(normalize(row(BAYC, data)))["args"] == {"from": U, "to": V, "tokenId": "8817"}
    # without evidence an unknown contract's transferFrom is an ERC-20 transfer, amount raw
    assert label(row(coll, call("erc20", "transferFrom", {"from": U, "to": V, "amount": 7})))["token"] == {
        "symbol": None, "address": coll, "amount": "7"}


def test_contract_creation():
    created = "0x" + "66" * 20
    r = row("", "0x6080604052", receipt_contract_address=created)
    assert label(r) == {"action": "contract_creation", "protocol": None, "sender": U, "contract": created,
                        "value": "0", "status": "success"}
    assert model_input(normalize(r)) == {"from": U, "to": None, "created": created, "status": "success"}


def test_calldata_that_does_not_decode_raises_row_error():
    with pytest.raises(RowError) as e:
        label(row(USDT, "0xa9059cbb" + "00" * 10))
    assert str(e.value) == "input: calldata does not decode as transfer(address,uint256) (InsufficientDataBytes)"


# -- synth round trips ---------------------------------------------------------

@pytest.fixture(scope="module")
def synth_rows():
    return list(generate_rows(4000, seed=11))


@pytest.mark.parametrize("action", ACTIONS)
def test_synth_label_round_trip_per_action(synth_rows, action):
    rows = [r for r in synth_rows if r["_expected"]["action"] == action]
    assert len(rows) >= 10, action
    for r in rows:
        assert label(r) == r["_expected"], r["hash"]
        raw_only = {k: v for k, v in r.items() if k not in ("function_signature", "decoded_input")}
        assert label(raw_only) == r["_expected_raw"], r["hash"]
        assert list(label(r)) == sorted(label(r), key=KEY_ORDER.index)  # stable key order


def test_synth_mix_is_realistic(synth_rows):
    from collections import Counter

    actions = Counter(r["_expected"]["action"] for r in synth_rows)
    assert actions.most_common(2)[0][0] == "transfer" and actions["swap"] > actions["approve"]
    senders = Counter(r["from_address"] for r in synth_rows)
    assert senders.most_common(1)[0][1] >= 20  # users recur
    assert sum(r["receipt_status"] == 0 for r in synth_rows) > 40
    with_decoded = sum(bool(r["function_signature"]) for r in synth_rows)
    assert 800 < with_decoded < 2000
    assert list(generate_rows(5, seed=3)) == list(generate_rows(5, seed=3))


def test_known_selector_is_decoded_from_calldata_not_from_decoded_columns():
    r = row(USDT, call("erc20", "transfer", {"to": V, "amount": 2_000_000}),
            function_signature="transfer(address _to, uint256 _value)",
            decoded_input='{"_to": "0x2222222222222222222222222222222222222222", "_value": "999"}')
    assert label(r)["token"]["amount"] == "2"
    assert model_input(normalize(r))["args"] == {"to": V, "amount": "2000000"}
