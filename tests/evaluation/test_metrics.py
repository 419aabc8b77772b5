"""Intent scoring on hand-made predictions, with exact expected values."""

from __future__ import annotations

import json

import pytest

from ethsft.evaluation.metrics import (compute_metrics, flatten, format_table, headline, parse_intent, score,
                                       values_equal)

SENDER = "0x1111111111111111111111111111111111111111"
WETH = "0xc02aaa39b223fe8d0a0e5c4f27ead9083c756cc2"
USDC = "0xa0b86991c6218b36c1d19d4a2e9eb0ce3606eb48"
SWAP = {"action": "swap", "protocol": "uniswap_v2", "sender": SENDER,
        "token_in": {"symbol": "WETH", "address": WETH, "amount": "1.5"},
        "token_out": {"symbol": "USDC", "address": USDC, "amount": None}, "status": "success"}
TRANSFER = {"action": "transfer", "protocol": "erc20", "sender": SENDER, "recipient": USDC,
            "token": {"symbol": "USDC", "address": USDC, "amount": "100"}, "status": "success"}


def with_(intent: dict, **changes) -> dict:
    """A deep copy of ``intent`` with dotted-path ``changes`` (``token_in__amount="1.50"``)."""
    out = json.loads(json.dumps(intent))
    for key, value in changes.items():
        *parents, leaf = key.split("__")
        node = out
        for p in parents:
            node = node[p]
        node[leaf] = value
    return out


def test_parse_intent_accepts_objects_only():
    assert parse_intent(' {"action": "swap"}\n') == {"action": "swap"}
    assert parse_intent('{"action": "swap"') is None  # truncated
    assert parse_intent('[1, 2]') is None and parse_intent('"swap"') is None and parse_intent("") is None
    assert parse_intent('{"a": 1} trailing') is None


def test_flatten_uses_dotted_paths():
    assert flatten(SWAP) == {"action": "swap", "protocol": "uniswap_v2", "sender": SENDER,
                             "token_in.symbol": "WETH", "token_in.address": WETH, "token_in.amount": "1.5",
                             "token_out.symbol": "USDC", "token_out.address": USDC, "token_out.amount": None,
                             "status": "success"}
    assert flatten({"a": [1, {"b": 2}], "e": {}}) == {"a.0": 1, "a.1.b": 2, "e": {}}


@pytest.mark.parametrize("ref, pred, equal", [
    ("1.5", "1.50", True), ("1.5", 1.5, True), ("100", "1e2", True), ("0.1", "0.10000", True),
    ("1.5", "1.51", False), ("1.5", "one and a half", False),
    (WETH, WETH.upper().replace("0X", "0x"), True), ("0xABcd", "0xabcd", True), (WETH, USDC, False),
    ("WETH", "weth", False),  # symbols are exact
    (None, None, True), (None, "null", False), (True, 1, False), (False, "0", False), ("unlimited", "unlimited", True),
])
def test_values_equal(ref, pred, equal):
    assert values_equal(ref, pred) is equal


def test_score_one_wrong_field_missing_and_extra():
    pred = with_(SWAP, protocol="uniswap_v3", token_in__amount="1.50", sender=SENDER.upper().replace("0X", "0x"))
    del pred["token_out"]["amount"]
    pred["deadline"] = "123"
    v = score(SWAP, pred)
    assert v.valid_json and not v.exact_match
    assert [p for p, ok in v.fields.items() if not ok] == ["protocol", "token_out.amount"]
    assert v.extra == ["deadline"]
    assert score(SWAP, None).fields == {p: False for p in flatten(SWAP)}


def test_exact_match_needs_all_fields_and_no_extra():
    assert score(SWAP, with_(SWAP, token_in__amount="1.500")).exact_match
    assert not score(SWAP, {**SWAP, "note": "x"}).exact_match  # all reference fields right, one extra


def test_compute_metrics_exact_values():
    references = [SWAP, SWAP, TRANSFER, TRANSFER]
    predictions = [
        with_(SWAP, token_in__amount="1.50", token_in__address=WETH.upper().replace("0X", "0x")),  # exact
        with_(SWAP, protocol="uniswap_v3"),  # one wrong field out of 10
        {**TRANSFER, "action": "swap", "extra": 1},  # wrong action + an extra field
        None,  # invalid JSON: 0 of 8 fields
    ]
    m = compute_metrics(references, predictions)
    assert m["samples"] == 4
    assert m["valid_json_rate"] == 0.75
    assert m["exact_match"] == 0.25
    assert m["field_accuracy"] == (10 + 9 + 7 + 0) / 36
    assert m["fields"]["action"] == {"correct": 2, "total": 4, "accuracy": 0.5}
    assert m["fields"]["protocol"] == {"correct": 2, "total": 4, "accuracy": 0.5}
    assert m["fields"]["token_in.amount"] == {"correct": 2, "total": 2, "accuracy": 1.0}
    assert m["fields"]["token.amount"] == {"correct": 1, "total": 2, "accuracy": 0.5}
    assert m["fields"]["recipient"] == {"correct": 1, "total": 2, "accuracy": 0.5}
    assert m["extra_fields"] == {"extra": 1} and m["samples_with_extra_fields"] == 1
    assert m["confusion"] == {"swap": {"swap": 2}, "transfer": {"invalid": 1, "swap": 1}}
    assert headline(m) == {"intent_valid_json": 0.75, "intent_exact_match": 0.25,
                           "intent_field_accuracy": 26 / 36, "intent_action_accuracy": 0.5,
                           "intent_protocol_accuracy": 0.5}
    table = format_table(m)
    assert "Exact match:      25.00%" in table and "token_in.amount" in table
    lines = table.splitlines()
    header = lines[lines.index("Confusion of 'action' (rows: reference, columns: prediction)") + 1]
    assert header.split() == ["swap", "invalid"]
    assert lines[-1].split() == ["transfer", "1", "1"]


def test_missing_action_and_empty_input():
    m = compute_metrics([SWAP], [{"protocol": "uniswap_v2"}])
    assert m["confusion"] == {"swap": {"missing": 1}} and "missing" in format_table(m)
    empty = compute_metrics([], [])
    assert empty["samples"] == 0 and empty["exact_match"] == 0.0
    with pytest.raises(ValueError):
        compute_metrics([SWAP], [])
