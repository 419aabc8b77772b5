"""synth: today's mix by default, the legacy mix reproducing the first generator's rows, and
`ethsft synth` + `ethsft prepare` end to end on the default mix."""

import hashlib
import json
from collections import Counter

from click.testing import CliRunner

from ethsft.cli.data import prepare as prepare_cmd
from ethsft.cli.data import synth as synth_cmd
from ethsft.eth.synth import generate_rows
from ethsft.eth.tx import COLUMNS


def columns_digest(mix):
    h = hashlib.sha256()
    for r in generate_rows(400, seed=7, mix=mix):
        h.update(json.dumps({c: r.get(c) for c in COLUMNS}, sort_keys=True).encode())
    return h.hexdigest()


def test_legacy_and_v3_unknown_mixes_reproduce_the_first_generators_rows():
    # digests of the rows the generator wrote before today's mix existed (its "default" was "legacy" now)
    assert columns_digest("legacy") == "fb3720105c8e9a14dc3f67adc8eab549a8dfe767ff3cf61601e2321aded6dee6"
    assert columns_digest("v3-unknown") == "51e6f7ed99fbc8ae4acdf64ae53c2b7164562adaca625157a1b626388ecfac22"


def test_default_mix_is_todays_mainnet():
    rows = list(generate_rows(3000, seed=2))
    kinds = Counter(r["_kind"] for r in rows)
    routers = {"0x3fc91a3afd70395cd496c647d5a6cc9d4b2b7fad", "0x66a9893cc07d91d95644aedd05d03f95e1dba8af"}
    ur = sum(r["to_address"] in routers and r["input"][:10] in ("0x3593564c", "0x24856bc3") for r in rows)
    v2v3 = kinds["v2_swap"] + kinds["v3_swap"]
    assert ur > 2 * v2v3 and ur / len(rows) > 0.08  # the Universal Router carries most Uniswap swaps
    for kind in ("permit2_approve", "aggregator_swap", "lido_stake", "lido_wrap", "lido_unstake", "aave", "seaport"):
        assert kinds[kind] >= 10, kind
    legacy = Counter(r["_kind"] for r in generate_rows(3000, seed=2, mix="legacy"))
    assert "ur_swap" not in legacy and legacy["v2_swap"] > 5 * kinds["v2_swap"]


def test_synth_then_prepare_end_to_end(tmp_path):
    runner = CliRunner()
    res = runner.invoke(synth_cmd, ["--rows", "1500", "--seed", "4", "--output", str(tmp_path / "d.csv")])
    assert res.exit_code == 0 and res.output == f"wrote 1500 rows to {tmp_path / 'd.csv'}\n"
    res = runner.invoke(prepare_cmd, ["--input", str(tmp_path / "d.csv"), "--output", str(tmp_path / "ds"),
                                      "--no-progress", "--no-token-stats"])
    assert res.exit_code == 0, res.output
    with open(tmp_path / "ds" / "prepare_summary.json") as f:
        s = json.load(f)
    assert (s["kept"], s["rejected"]) == (1500, 0)
    for action in ("swap", "approve", "stake", "supply", "nft_purchase", "contract_call"):
        assert s["actions"][action] > 0, action
    records = [json.loads(line) for line in open(tmp_path / "ds" / "train.jsonl")]
    protocols = Counter(json.loads(r["output"])["protocol"] for r in records)
    assert protocols["uniswap_ur_v3"] > 0 and protocols["permit2"] > 0 and protocols["seaport"] > 0
