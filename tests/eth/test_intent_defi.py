"""Today's protocols labelled from real mainnet calldata, each fixture cited by repository and path.

``fixtures/mainnet_calldata.json`` holds the calldata copied verbatim from the public files it names
(``source``: repository and path; ``tx``: the transaction hash the file gives), transactions mined or
simulated on mainnet. Token transfers, where a test gives them, are the Transfer logs or trace of the
same file; a ``from`` / ``value`` the file lacks is marked as a fill-in where it is set.
"""

import json
import os

import pytest

from ethsft.eth.abi import by_name
from ethsft.eth.intent import dumps, label
from ethsft.eth.tx import model_input, normalize

U = "0x" + "11" * 20
WETH = "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
UR_V1 = "0xef1c6e67703c7bd7107eed8303fbe6ec2554bf6b"
UR_V12 = "0x3fc91a3afd70395cd496c647d5a6cc9d4b2b7fad"
PERMIT2 = "0x000000000022d473030f116ddee9f6b43ac78ba3"
ETH = {"symbol": "ETH", "address": None}
with open(os.path.join(os.path.dirname(__file__), "fixtures", "mainnet_calldata.json")) as _f:
    FX = json.load(_f)


def row(to, data, value=0, frm=U, tt=None, status="1"):
    transfers = "" if tt is None else json.dumps(
        [dict(token_address=t, from_address=f, to_address=r, value=str(v)) for t, f, r, v in tt])
    return dict(hash="0x" + "ab" * 32, block_number="17000000", from_address=frm, to_address=to, value=str(value),
                input=data, receipt_status=status, token_transfers=transfers)


def intent(r):
    d = label(r)
    assert dumps(d) == json.dumps(d, separators=(",", ":"))  # built in key order
    return d


# -- Universal Router -----------------------------------------------------------------------------
# status-im/status-go appdatabase/database_test.go, uniswapV2TxTestData / uniswapV2ReceiptTestData:
# tx 0x6d70a0b14e2fe1ba28d6cb910ffc4aa787264dff6c273e20509136461ac587aa (WRAP_ETH, V2_SWAP_EXACT_IN WETH->PEPE)
UR_V2_ETH_IN = FX["ur_v2_eth_in"]["input"]
# same file, uniswapV3TxTestData / uniswapV3ReceiptTestData:
# tx 0x5c5bca1291d1f09c07a9b66e56e78cc23da41b3e69e330dcd46a71ef6176df8b (WRAP_ETH, V3_SWAP_EXACT_IN WETH->0x5026)
UR_V3_ETH_IN = FX["ur_v3_eth_in"]["input"]
STATUS_USER = "0x165eeecc32dcb623f51fc6c1ddd9e2aea1575c63"
PEPE = "0x6982508145454ce325ddbe47a25d4ec3d2311933"
# rotki/protocolberg README.md, eth_getTransactionByHash of
# 0x05da328841fccf475de11a731036b8cb10f7245a8f82f2c17a0c9cff41154995 (V3_SWAP_EXACT_IN 0xbe04->WETH, UNWRAP_WETH)
UR_V3_ETH_OUT = FX["ur_v3_eth_out"]["input"]
# GetAurox/Aurox-Wallet src/serviceWorker/managers/EVMTransactionsManager/simulators/blocknative/mock.ts: a
# Blocknative simulation on mainnet of PERMIT2_PERMIT, V2_SWAP_EXACT_IN URUS->WETH, UNWRAP_WETH, with its trace
UR_V2_ETH_OUT = FX["ur_v2_eth_out_permit2"]["input"]
AUROX_USER = "0xdf40aeba2e9907e900089bccf929ffccd8fa4e0b"
URUS = "0xc6dddb5bc6e61e0841c54f3e723ae1f3a807260b"
URUS_PAIR = "0xebd54ad6c1d4b079bdc20ecf36dd29d1d76c9977"
# Elnaril/uniswap-universal-router-decoder tests/test_router_decoder.py, test_encode_data_for_v3_swap_exact_out:
# the library's encoding of tx 0x6aa16d2af66a8d960ce459abdd0a9018e35b2338cd3d2eb52b1280cc5a5f93ff's input
UR_V3_EXACT_OUT = FX["ur_v3_exact_out"]["input"]


def test_universal_router_v2_eth_in_with_the_receipts_transfers():
    tt = [(WETH, UR_V1, UR_V1, 750000000000000000),  # UR v1 moves the wrapped WETH to itself: not counted
          (WETH, UR_V1, "0xa43fe16908251ee70ef74718545e4fe6c5ccec9f", 750000000000000000),
          (PEPE, "0xa43fe16908251ee70ef74718545e4fe6c5ccec9f", STATUS_USER, 0x11b2e784030a3a65a3559087)]
    r = row(UR_V1, UR_V2_ETH_IN, value=0xa688906bd8b0000, frm=STATUS_USER, tt=tt)
    assert intent(r) == {
        "action": "swap", "protocol": "uniswap_ur_v2", "sender": STATUS_USER, "recipient": STATUS_USER,
        "token_in": {**ETH, "amount": "0.75"},
        "token_out": {"symbol": "PEPE", "address": PEPE, "amount": "5477527264.701082519211446407"},
        "amount_out_min": "5426558770.986948865962149214", "status": "success"}
    # without transfers the output amount is not known
    assert label(row(UR_V1, UR_V2_ETH_IN, value=0xa688906bd8b0000, frm=STATUS_USER))["token_out"]["amount"] is None
    commands = model_input(normalize(r))["args"]["commands"]
    assert [c["command"] for c in commands] == ["WRAP_ETH", "V2_SWAP_EXACT_IN"]
    assert commands[1]["args"]["path"] == [WETH, PEPE]


def test_universal_router_v3_eth_in():
    tok = "0x5026f006b85729a8b14553fae6af249ad16c9aab"
    tt = [(tok, "0x7316f8dd242974f0fd7b16dbcc68920b96bc4db1", STATUS_USER, 0x024cc783fc216d1e77f90d)]
    d = intent(row(UR_V1, UR_V3_ETH_IN, value=0x1f161421c8e0000, frm=STATUS_USER, tt=tt))
    assert d == {
        "action": "swap", "protocol": "uniswap_ur_v3", "sender": STATUS_USER, "recipient": STATUS_USER,
        "token_in": {**ETH, "amount": "0.14"},
        "token_out": {"symbol": None, "address": tok, "amount": "2780431904511285232400653"},
        "amount_out_min": "2760478368832231712053947", "status": "success"}


def test_universal_router_v3_eth_out_recipient_from_unwrap():
    sender = "0x3f52c7ab2f23223e0338943db61caa6700d54db3"
    d = intent(row(UR_V12, UR_V3_ETH_OUT, frm=sender))
    assert d == {
        "action": "swap", "protocol": "uniswap_ur_v3", "sender": sender, "recipient": sender,
        "token_in": {"symbol": None, "address": "0xbe042e9d09cb588331ff911c2b46fd833a3e5bd6",
                     "amount": "67198755878027578555095"},
        "token_out": {**ETH, "amount": None}, "amount_out_min": "0.089446601402572674", "status": "success"}


def test_universal_router_v2_eth_out_after_a_permit2_permit():
    tt = [(URUS, AUROX_USER, URUS_PAIR, 4983372372202662570), (WETH, URUS_PAIR, UR_V1, 47948761724364941)]
    d = intent(row(UR_V1, UR_V2_ETH_OUT, frm=AUROX_USER, tt=tt))
    assert d == {
        "action": "swap", "protocol": "uniswap_ur_v2", "sender": AUROX_USER, "recipient": AUROX_USER,
        "token_in": {"symbol": None, "address": URUS, "amount": "4983372372202662570"},
        "token_out": {**ETH, "amount": "0.047948761724364941"}, "amount_out_min": "0.045665487356538039",
        "status": "success"}
    steps = model_input(normalize(row(UR_V1, UR_V2_ETH_OUT, frm=AUROX_USER)))["args"]["commands"]
    assert [s["command"] for s in steps] == ["PERMIT2_PERMIT", "V2_SWAP_EXACT_IN", "UNWRAP_WETH"]
    assert "signature" not in steps[0]["args"]


def test_universal_router_v3_exact_out_path_is_reversed():
    d = intent(row(UR_V12, UR_V3_EXACT_OUT))
    assert d == {
        "action": "swap", "protocol": "uniswap_ur_v3", "sender": U, "recipient": U,
        "token_in": {"symbol": None, "address": "0x0a5e677a6a24b2f1a2bf4f3bffc443231d2fdec8", "amount": None},
        "token_out": {"symbol": None, "address": "0x431ad2ff6a9c365805ebad47ee021148d6f7dbe0",
                      "amount": "40000000000000000000000"},
        "amount_in_max": "2290420550308290562760", "status": "success"}


def _ur(commands, inputs, router=UR_V12):
    from ethsft.eth.abi import by_name as fn

    return "0x" + fn("universal_router", "execute", 3).encode(
        {"commands": bytes(commands), "inputs": inputs, "deadline": 1}).hex()


def test_universal_router_split_route_sums_legs_and_unknown_commands_are_contract_calls():
    import eth_abi

    usdc, wbtc = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48", "0x2260fac5e5542a773aa44fbcfedf7c193bc2c599"
    leg = lambda amt, mn: eth_abi.encode(  # noqa: E731 - V2_SWAP_EXACT_IN to MSG_SENDER
        ["address", "uint256", "uint256", "address[]", "bool"], ["0x" + "00" * 19 + "01", amt, mn, [usdc, wbtc], True])
    d = label(row(UR_V12, _ur([0x08, 0x08], [leg(100_000_000, 10), leg(50_000_000, 5)])))
    assert (d["protocol"], d["token_in"]["amount"], d["amount_out_min"]) == ("uniswap_ur_v2", "150", "0.00000015")
    # an NFT-marketplace command of the first routers: no swap intent is guessed
    d = label(row(UR_V1, _ur([0x08, 0x11], [leg(1, 1), b"\x00" * 64]), ))
    assert (d["action"], d["function"]) == ("contract_call", "execute")


def test_universal_router_v4_single_swap_native_eth_out():
    # the action layout of Elnaril/uniswap-universal-router-decoder tests/resources/transactions.py entry 6
    # (tx 0x4b8c8940707bbcd928d00d0e369bdbe8ff65b092ba1fc8aa10891bfac7c4277b: SWAP_EXACT_IN_SINGLE, SETTLE_ALL,
    # TAKE_ALL), re-encoded here from its decoded values
    import eth_abi

    usdc = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
    zero = "0x" + "00" * 20
    swap = eth_abi.encode(["((address,address,uint24,int24,address),bool,uint128,uint128,bytes)"],
                          [((zero, usdc, 500, 10, zero), False, 190000000000, 41949083966510495645, b"\x00")])
    settle = eth_abi.encode(["address", "uint256"], [usdc, 190000000000])
    take = eth_abi.encode(["address", "uint256"], [zero, 41949083966510495645])
    v4 = eth_abi.encode(["bytes", "bytes[]"], [bytes([0x06, 0x0C, 0x0F]), [swap, settle, take]])
    d = intent(row("0x66a9893cc07d91d95644aedd05d03f95e1dba8af", _ur([0x10], [v4])))
    assert d == {"action": "swap", "protocol": "uniswap_ur_v4", "sender": U, "recipient": U,
                 "token_in": {"symbol": "USDC", "address": usdc, "amount": "190000"},
                 "token_out": {**ETH, "amount": None}, "amount_out_min": "41.949083966510495645",
                 "status": "success"}


# -- Permit2 ---------------------------------------------------------------------------------------
# GetAurox/Aurox-Wallet .../simulators/blocknative/mock.ts: the router's internal call to Permit2.permit
PERMIT2_PERMIT = FX["permit2_permit"]["input"]


def test_permit2_permit_and_approve():
    d = intent(row(PERMIT2, PERMIT2_PERMIT, frm=UR_V1))
    assert d == {"action": "approve", "protocol": "permit2", "sender": UR_V1, "from": AUROX_USER, "spender": UR_V1,
                 "token": {"symbol": None, "address": URUS, "amount": "unlimited"}, "expiry": "1683102714",
                 "status": "success"}
    assert "signature" not in model_input(normalize(row(PERMIT2, PERMIT2_PERMIT)))["args"]
    usdc = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
    data = "0x" + by_name("permit2", "approve").encode(
        {"token": usdc, "spender": UR_V12, "amount": 2_500_000, "expiration": 1700000000}).hex()
    assert intent(row(PERMIT2, data)) == {
        "action": "approve", "protocol": "permit2", "sender": U, "spender": UR_V12,
        "token": {"symbol": "USDC", "address": usdc, "amount": "2.5"}, "expiry": "1700000000", "status": "success"}


# -- 1inch -----------------------------------------------------------------------------------------
ONEINCH_V5 = "0x1111111254eeb25477b68fb85ed929f73a960582"
# LedgerHQ/app-plugin-1inch tests/src/V5/Ethereum/swap_known_to_known_ethereum.test.ts:
# tx 0x33005583e9a49eb363477e9a17eaf8061c01d06ddd67700877ea2b4d7c18679a (ETH -> 0xf411, AggregationRouterV5.swap)
ONEINCH_ETH_IN = FX["oneinch_v5_eth_in"]["input"]


def test_oneinch_v5_swap_eth_in():
    tok, to = "0xf411903cbc70a74d22900a5de66a2dda66507255", "0xd9408f29026e32852aff8c5c9c8ea834b44b4e1c"
    tt = [(tok, "0x60031819a16266d896268cfea5d5be0b6c2b5d75", to, 500000000000000000000000)]
    d = intent(row(ONEINCH_V5, ONEINCH_ETH_IN, value=1055360000000000000, frm=to, tt=tt))  # value: the swap's amount
    assert d == {"action": "swap", "protocol": "1inch_v5", "sender": to, "recipient": to,
                 "token_in": {**ETH, "amount": "1.05536"},
                 "token_out": {"symbol": None, "address": tok, "amount": "500000000000000000000000"},
                 "amount_out_min": "495904072430653709559751", "status": "success"}
    args = model_input(normalize(row(ONEINCH_V5, ONEINCH_ETH_IN)))["args"]
    assert set(args) == {"desc"}  # the executor and its payload are left out


def test_oneinch_v5_swap_token_in_without_transfers():
    who, tok = "0xd4f74edd038f9a25208a0680d75602a5ea41038d", "0x993864e43caa7f7f12953ad6feb1d1ca635b875f"
    d = intent(row(ONEINCH_V5, FX["oneinch_v5_usdc_in"]["input"], frm=who))
    assert d == {"action": "swap", "protocol": "1inch_v5", "sender": who, "recipient": who,
                 "token_in": {"symbol": "USDC", "address": "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48",
                              "amount": "136.553373"},
                 "token_out": {"symbol": None, "address": tok, "amount": None},
                 "amount_out_min": "257381055213040809274", "status": "success"}


# -- Lido ------------------------------------------------------------------------------------------
# LedgerHQ/app-plugin-lido tests/src/ethereum/lido_submit.test.js (tx 0x867f8421...c63d), lido_wrap.test.js
# (tx 0x288e20d9...741b), lido_unwrap.test.js (tx 0x400d0f4f...0c6e)
LIDO, WSTETH = "0xae7ab96520de3a18e5e111b5eaab095312d7fe84", "0x7f39c581f595b53c5cb19bd0b3f8da6c935e2ca0"


def test_lido_stake_wrap_unwrap():
    d = intent(row(LIDO, FX["lido_submit"]["input"], value=2 * 10**18))  # value: a fill-in
    assert d == {"action": "stake", "protocol": "lido", "sender": U, "token": {**ETH, "amount": "2"},
                 "status": "success"}
    d = intent(row(WSTETH, FX["wsteth_wrap"]["input"]))
    assert d == {"action": "wrap", "protocol": "lido", "sender": U,
                 "token": {"symbol": "stETH", "address": LIDO, "amount": "38.77528321215538515"}, "status": "success"}
    d = intent(row(WSTETH, FX["wsteth_unwrap"]["input"]))
    assert d == {"action": "unwrap", "protocol": "lido", "sender": U,
                 "token": {"symbol": "wstETH", "address": WSTETH, "amount": "0.889403156108225561"},
                 "status": "success"}
    # wrap(uint256) on any other contract is not Lido's
    d = label(row(U, FX["wsteth_wrap"]["input"]))
    assert (d["action"], d["function"]) == ("contract_call", "0xea598cb0")


def test_lido_unstake_request_withdrawals():
    # LedgerHQ/app-plugin-lido tests/src/ethereum/lido_request_withdrawals.test.js (a Goerli tx of the same
    # WithdrawalQueue ABI: goerli.etherscan.io/tx/0xc0aa4570...8e86)
    data = FX["lido_request_withdrawals"]["input"]
    d = intent(row("0x889edc2edab5f40e902b864ad4d7ade8e412f9b1", data))
    assert d == {"action": "unstake", "protocol": "lido", "sender": U,
                 "recipient": "0xad79579eecef31f4719426232d7b527b17b84f85",
                 "token": {"symbol": "stETH", "address": LIDO, "amount": "0.0995"}, "status": "success"}


# -- Aave v3 ---------------------------------------------------------------------------------------
AAVE_POOL = "0x87870bca3f3fd6335c3f4ce8392d69350b4fa4e2"
USDT = "0xdac17f958d2ee523a2206206994597c13d831ec7"


def test_aave_v3_borrow_and_the_other_pool_calls():
    # UMAprotocol/oval-contracts scripts/src/gasProfiling/aaveV3Borrow.ts: "Original borrow"
    # tx 0x20092fee7e5574443f19fc2fd0e2aaa4b73226252e428e11e068e2a1930b9a67
    who = "0xec4a9460200017cf196da530a8b2ad5904e54796"
    data = FX["aave_v3_borrow"]["input"]
    assert intent(row(AAVE_POOL, data, frm=who)) == {
        "action": "borrow", "protocol": "aave_v3", "sender": who, "on_behalf_of": who,
        "token": {"symbol": "USDT", "address": USDT, "amount": "5000"}, "rate_mode": "variable", "status": "success"}
    pool = lambda name, **a: "0x" + by_name("aave_v3_pool", name).encode(a).hex()  # noqa: E731
    d = intent(row(AAVE_POOL, pool("repay", asset=USDT, amount=2**256 - 1, interestRateMode=2, onBehalfOf=who)))
    assert (d["action"], d["on_behalf_of"], d["token"]["amount"], d["rate_mode"]) == ("repay", who, "all", "variable")
    d = intent(row(AAVE_POOL, pool("supply", asset=USDT, amount=10**6, onBehalfOf=who, referralCode=0)))
    assert list(d) == ["action", "protocol", "sender", "on_behalf_of", "token", "status"]
    d = intent(row(AAVE_POOL, pool("withdraw", asset=USDT, amount=2**256 - 1, to=who)))
    assert (d["action"], d["recipient"], d["token"]["amount"]) == ("withdraw", who, "all")


# -- Seaport ---------------------------------------------------------------------------------------
SEAPORT_11 = "0x00000000006c3852cbef3e08e8df289169ede581"
# kigawas/web3-input-decoder tests/data/nft.py SEAPORT_FULFILL_ORDER_CALL_INPUT:
# tx 0xa139231454fd021dd227a94fff6a1b6260890bb95e5f5bf8517af36e228575e6 (BAYC #1377, fulfillBasicOrder)
SEAPORT_BASIC = FX["seaport_basic"]["input"]


def test_seaport_basic_order_is_an_nft_purchase_priced_with_fees():
    d = intent(row(SEAPORT_11, SEAPORT_BASIC, value=72 * 10**18))
    assert d == {"action": "nft_purchase", "protocol": "seaport", "sender": U,
                 "from": "0x1850dd8fb9323b01c340d0eb1da1ec16cc8ee1a2", "recipient": U,
                 "token": {"symbol": "BAYC", "address": "0xbc4ca0eda7647a8ab7c2061c2e118a18a936f13d",
                           "token_id": "1377", "amount": "1"},
                 "price": {**ETH, "amount": "72"}, "status": "success"}
    args = model_input(normalize(row(SEAPORT_11, SEAPORT_BASIC)))["args"]["parameters"]
    assert "signature" not in args and args["offerIdentifier"] == "1377"
    # the 0x00000000 selector (fulfillBasicOrder_efficient) is Seaport's only on Seaport
    other = label(row(U, "0x00000000" + SEAPORT_BASIC[10:]))
    assert (other["action"], other["function"]) == ("contract_call", "0x00000000")


def test_seaport_advanced_order_listing():
    fn = by_name("seaport", "fulfillAdvancedOrder")
    zero, seller = "0x" + "00" * 20, "0x" + "22" * 20
    params = {"offerer": seller, "zone": zero,
              "offer": [{"itemType": 3, "token": "0x" + "44" * 20, "identifierOrCriteria": 7, "startAmount": 10,
                         "endAmount": 10}],
              "consideration": [
                  {"itemType": 0, "token": zero, "identifierOrCriteria": 0, "startAmount": 9 * 10**17,
                   "endAmount": 9 * 10**17, "recipient": seller},
                  {"itemType": 0, "token": zero, "identifierOrCriteria": 0, "startAmount": 10**17,
                   "endAmount": 10**17, "recipient": "0x" + "55" * 20}],
              "orderType": 1, "startTime": 0, "endTime": 2**40, "zoneHash": b"\x00" * 32, "salt": 1,
              "conduitKey": b"\x00" * 32, "totalOriginalConsiderationItems": 2}
    data = "0x" + fn.encode({"advancedOrder": {"parameters": params, "numerator": 2, "denominator": 10,
                                               "signature": b"", "extraData": b""},
                             "criteriaResolvers": [], "fulfillerConduitKey": b"\x00" * 32, "recipient": zero}).hex()
    d = intent(row("0x0000000000000068f116a894984e2db1123eb395", data, value=2 * 10**17))
    assert (d["action"], d["from"], d["recipient"], d["token"]["token_id"], d["token"]["amount"],
            d["price"]) == ("nft_purchase", seller, U, "7", "2", {**ETH, "amount": "0.2"})


@pytest.mark.parametrize("status", ["0", "1"])
def test_failed_transactions_keep_their_intent(status):
    d = label(row(WSTETH, FX["wsteth_unwrap"]["input"], status=status))
    assert d["action"] == "unwrap" and d["status"] == ("success" if status == "1" else "failed")
