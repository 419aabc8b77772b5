"""prepare: synth round trip through files, split / leakage / accounting, rejects and fatal errors."""

import csv
import json
import os

import pytest
from click.testing import CliRunner

from ethsft.cli.data import prepare as prepare_cmd
from ethsft.cli.data import synth as synth_cmd
from ethsft.data.records import DataError
from ethsft.eth.intent import ACTIONS, dumps
from ethsft.eth.prepare import INSTRUCTION, SPLITS, prepare, split_of
from ethsft.eth.synth import generate_rows, write_rows
from ethsft.eth.tx import COLUMNS
from pathlib import Path

U = "0x" + "11" * 20
V = "0x" + "22" * 20
USDT = "0xdac17f958d2ee523a2206206994597c13d831ec7"
TRANSFER = "0xa9059cbb" + "00" * 12 + "22" * 20 + f"{1_500_000:064x}"
APPROVE = "0x095ea7b3" + "00" * 12 + "22" * 20 + "ff" * 32


def good(i, **kw):
    r = dict(hash=f"0x{i:064x}", block_number="18000000", from_address=U, to_address=USDT, value="0",
             input=TRANSFER, receipt_status="1")
    r.update(kw)
    return r


def write_csv(path, rows, header=None):
    header = header or list(rows[0])
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        for r in rows:
            w.writerow([r.get(c, "") for c in header])
    return str(path)


def read(out, name):
    with open(os.path.join(out, name)) as f:
        return [json.loads(line) for line in f]


def run(inp, out, **kw):
    kw.setdefault("progress", False)
    kw.setdefault("count_tokens", False)
    return prepare(inp, out, **kw)


def input_of(row) -> str:
    """The record ``input`` prepare writes for a decoded row (what the split is keyed on)."""
    from ethsft.eth.tx import model_input, normalize

    return json.dumps(model_input(normalize(row)), separators=(",", ":"), ensure_ascii=False)


@pytest.fixture(scope="module")
def synth_1200():
    return list(generate_rows(1200, seed=5))


@pytest.mark.parametrize("ext", [".csv", ".jsonl", ".parquet"])
def test_synth_prepare_round_trip(tmp_path, synth_1200, ext):
    rows = synth_1200
    inp = tmp_path / f"decoded{ext}"
    assert write_rows(inp, rows) == 1200
    out = tmp_path / "ds"
    s = run(inp, out, seed=3)
    assert (s["rows_read"], s["kept"], s["duplicates"], s["rejected"]) == (1200, 1200, 0, 0)
    expected = {name: [r for r in rows if split_of(input_of(r), 3) == name] for name in SPLITS}
    for name in SPLITS:
        recs = read(out, f"{name}.jsonl")
        assert len(recs) == len(expected[name]) == s["splits"][name]
        for rec, r in zip(recs, expected[name]):
            assert list(rec) == ["instruction", "input", "output"]
            assert rec["instruction"] == INSTRUCTION
            assert rec["output"] == dumps(r["_expected"])
            assert json.loads(rec["input"])["from"] == r["from_address"]
    assert s["actions"] == {a: sum(r["_expected"]["action"] == a for r in rows) for a in ACTIONS}
    assert read(out, "rejects.jsonl") == []
    with open(out / "prepare_summary.json") as f:
        assert json.load(f)["kept"] == 1200
    assert sorted(os.listdir(out)) == ["prepare_summary.json", "rejects.jsonl", "test.jsonl", "train.jsonl",
                                       "validation.jsonl"]


def test_split_is_by_content_and_stable_on_a_superset(tmp_path, synth_1200):
    def assignment(out):
        got = {}
        for name in SPLITS:
            for rec in read(out, f"{name}.jsonl"):
                got[rec["output"]] = name
        return got

    small = write_rows(tmp_path / "a.csv", synth_1200[:500]) and tmp_path / "a.csv"
    big_rows = synth_1200[500:] + synth_1200[:500]  # superset, different order
    big = write_rows(tmp_path / "b.csv", big_rows) and tmp_path / "b.csv"
    run(small, tmp_path / "o1")
    run(big, tmp_path / "o2")
    a1, a2 = assignment(tmp_path / "o1"), assignment(tmp_path / "o2")
    assert len(a1) == 500 and all(a2[k] == v for k, v in a1.items())
    # another seed moves rows, deterministically
    s = run(big, tmp_path / "o3", seed=1)
    assert sum(a2[k] != v for k, v in assignment(tmp_path / "o3").items()) > 200
    assert s["splits"] == {n: sum(split_of(input_of(r), 1) == n for r in big_rows) for n in SPLITS}
    # the proportions follow --split
    s = run(big, tmp_path / "o4", split=(0.5, 0.5, 0.0))
    assert s["splits"]["test"] == 0 and 500 < s["splits"]["train"] < 700


def test_duplicates_are_dropped_and_counted(tmp_path):
    rows = [good(1), good(2), good(1), good(3), dict(good(2), hash=good(2)["hash"].upper().replace("0X", "0x")),
            good(1, value="x")]
    s = run(write_csv(tmp_path / "d.csv", rows), tmp_path / "o")
    assert (s["rows_read"], s["kept"], s["duplicates"], s["rejected"]) == (6, 3, 3, 0)
    assert sum(s["splits"].values()) == 3


def test_rejects_name_row_and_column(tmp_path):
    long_hex = "0x" + "ab" * 40
    rows = [
        good(1),
        good(2, input="0xzz12"),
        good(3, value="1.5"),
        good(4, from_address="0x1234"),
        good(5, receipt_status="2"),
        good(6, receipt_status=""),
        good(7, hash="0xabc"),
        good(8, token_transfers="not json", input=APPROVE),
        good(9, input="0xa9059cbb0000"),
        good(10, input="0xa0712d68" + "00" * 32, function_signature="stake(uint256)"),
        good(11, input=APPROVE, token_transfers='[{"token_address":"' + USDT + '","from_address":"' + U + '","value":"1"}]'),
        good(12, input=long_hex + "g"),
        good(13, block_number="-1"),
    ]
    header = list(COLUMNS)
    path = write_csv(tmp_path / "r.csv", rows, header)
    with open(path, "a", newline="") as f:
        f.write("0x" + "ee" * 32 + ",1,2\n")  # row 15: wrong field count
    s = run(path, tmp_path / "o")
    assert (s["rows_read"], s["kept"], s["duplicates"], s["rejected"]) == (14, 1, 0, 13)
    rejects = read(tmp_path / "o", "rejects.jsonl")
    assert [(r["row"], r["reason"]) for r in rejects] == [
        (3, "input: expected 0x-prefixed hex bytes (an even number of hex digits), got '0xzz12'"),
        (4, "value: expected a non-negative integer amount of wei, got '1.5'"),
        (5, "from_address: expected a 0x-prefixed 20-byte hex address, got '0x1234'"),
        (6, "receipt_status: expected 0 or 1, got '2'"),
        (7, "receipt_status: empty (a receipt status of 0 or 1 is needed to label the outcome)"),
        (8, "hash: expected a 0x-prefixed 32-byte hex string, got '0xabc'"),
        (9, "token_transfers: expected a JSON list of {token_address, from_address, to_address, value[, "
            "token_id]}, got 'not json'"),
        (10, "input: calldata does not decode as transfer(address,uint256) (InsufficientDataBytes)"),
        (11, "function_signature: 'stake(uint256)' has selector 0xa694fc3a, the input starts with 0xa0712d68"),
        (12, "token_transfers: item 0 has no 'to_address'"),
        (13, "input: expected 0x-prefixed hex bytes (an even number of hex digits), got '0xababababababababababababababababababababa...'"),
        (14, "block_number: expected a non-negative integer, got '-1'"),
        (15, "record: 3 fields, the header has 15"),
    ]
    assert rejects[0]["hash"] == good(2)["hash"]
    assert s["rejected_by_column"] == {"block_number": 1, "from_address": 1, "function_signature": 1, "hash": 1,
                                       "input": 3, "receipt_status": 2, "record": 1, "token_transfers": 2,
                                       "value": 1}
    # token_transfers are only read where they matter (routers, transferFrom/approve): elsewhere ignored
    s = run(write_csv(tmp_path / "t.csv", [good(1, token_transfers="not json")]), tmp_path / "o2")
    assert (s["kept"], s["rejected"]) == (1, 0)


def test_jsonl_row_problems_are_rejects(tmp_path):
    p = tmp_path / "x.jsonl"
    lines = [json.dumps(good(1)), "", "{not json", "[1,2]", json.dumps({"hash": "0x" + "00" * 32}),
             json.dumps(dict(good(2), value=10**30, block_number=5, receipt_status=0)),
             json.dumps(dict(good(3), value=1.0))]
    p.write_bytes(("\n".join(lines) + "\n").encode() + b'{"hash": "\xff"}\n')
    s = run(p, tmp_path / "o")
    assert (s["rows_read"], s["kept"], s["rejected"]) == (7, 2, 5)
    assert [(r["row"], r["reason"]) for r in read(tmp_path / "o", "rejects.jsonl")] == [
        (3, "record: invalid JSON (Expecting property name enclosed in double quotes: line 1 column 2 (char 1))"),
        (4, "record: expected a JSON object, got list"),
        (5, "record: missing required column(s) 'block_number', 'from_address', 'to_address', 'value', 'input', "
            "'receipt_status'"),
        (7, "value: expected a non-negative integer amount of wei, got 1.0"),
        (8, "record: not UTF-8 text (invalid start byte)"),
    ]


def fatal(tmp_path, path, match_text, **kw):
    out = tmp_path / "out"
    with pytest.raises(DataError) as e:
        run(path, out, **kw)
    assert str(e.value) == match_text
    assert not out.exists()


def test_fatal_errors_have_exact_messages(tmp_path):
    p = str(tmp_path / "missing.csv")
    fatal(tmp_path, p, f"{p}: no such file")
    p = tmp_path / "d.txt"
    p.write_text("x")
    fatal(tmp_path, str(p), f"{p}: unsupported format '.txt' (use .csv, .jsonl or .parquet)")
    p = tmp_path / "empty.csv"
    p.write_text("")
    fatal(tmp_path, str(p), f"{p}: empty file (no header row)")
    p = tmp_path / "empty.jsonl"
    p.write_text("")
    fatal(tmp_path, str(p), f"{p}: empty file")
    p = tmp_path / "blank.jsonl"
    p.write_text("\n\n")
    fatal(tmp_path, str(p), f"{p}: no data rows")
    p = tmp_path / "header.csv"
    p.write_text(",".join(COLUMNS) + "\n")
    fatal(tmp_path, str(p), f"{p}: no data rows")
    p = write_csv(tmp_path / "nocol.csv", [good(1)], header=["hash", "block_number", "from_address", "to_address",
                                                             "input"])
    fatal(tmp_path, p, f"{p}: row 1: missing required column(s) 'value', 'receipt_status'")
    p = tmp_path / "nocol.jsonl"
    p.write_text("\n" + json.dumps({k: v for k, v in good(1).items() if k != "input"}) + "\n")
    fatal(tmp_path, str(p), f"{p}: row 2: missing required column(s) 'input'")
    p = tmp_path / "bad.parquet"
    p.write_text("not parquet")
    with pytest.raises(DataError, match=r"bad\.parquet: not a readable Parquet file \("):
        run(p, tmp_path / "out")
    p = write_csv(tmp_path / "ok.csv", [good(1)])
    fatal(tmp_path, p, "split must sum to 1, got 0.7 + 0.2 + 0.15 = 1.05", split=(0.7, 0.2, 0.15))
    fatal(tmp_path, p, "split: the validation fraction must be between 0 and 1, got -0.1", split=(0.9, -0.1, 0.2))


def test_parquet_missing_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = tmp_path / "m.parquet"
    pq.write_table(pa.table({"hash": ["0x" + "00" * 32], "input": ["0x"]}), p)
    fatal(tmp_path, str(p), f"{p}: missing required column(s) 'block_number', 'from_address', 'to_address', "
                            "'value', 'receipt_status' (Parquet schema)")


def test_failure_midway_leaves_previous_outputs_untouched(tmp_path):
    out = tmp_path / "o"
    run(write_csv(tmp_path / "ok.csv", [good(1), good(2)]), out)
    before = {n: (out / n).read_text() for n in os.listdir(out)}
    p = tmp_path / "nul.csv"
    write_csv(p, [good(i) for i in range(1, 50)])
    with open(p, "a") as f:
        f.write("0x" + "ff" * 32 + ',"1"2\n')
    with pytest.raises(DataError) as e:
        run(p, out)
    assert str(e.value) == f"{p}: row 51: unreadable CSV (',' expected after '\"')"
    assert {n: (out / n).read_text() for n in os.listdir(out)} == before


def test_token_stats_in_mistral_tokens(tmp_path, synth_1200):
    p = tmp_path / "t.csv"
    write_rows(p, synth_1200[:300])
    s = prepare(p, tmp_path / "o", progress=False, count_tokens=True)
    t = s["tokens"]
    assert t["sample"] == 300 and t["tokenizer"] == "mistral v1 (mistral-common)"
    assert 60 < t["prompt"]["mean"] < 600 and t["prompt"]["mean"] <= t["prompt"]["p95"] <= t["prompt"]["max"]
    assert 40 < t["completion"]["mean"] < 400


def test_cli_synth_then_prepare(tmp_path):
    runner = CliRunner()
    data = tmp_path / "processed" / "decoded.csv"
    res = runner.invoke(synth_cmd, ["--rows", "300", "--output", str(data), "--seed", "2"])
    assert res.exit_code == 0 and res.output == f"wrote 300 rows to {data}\n"
    out = tmp_path / "datasets"
    res = runner.invoke(prepare_cmd, ["--input", str(data), "--output", str(out), "--split", "0.8", "0.1", "0.1",
                                      "--seed", "4", "--no-progress", "--no-token-stats"])
    assert res.exit_code == 0, res.output
    assert res.output.startswith(f"read 300 rows from {data}: kept 300, duplicates 0, rejected 0\nsplits: train ")
    assert json.loads((out / "prepare_summary.json").read_text())["split"] == {"train": 0.8, "validation": 0.1,
                                                                               "test": 0.1}
    res = runner.invoke(prepare_cmd, ["--input", str(data), "--output", str(out), "--split", "0.8", "0.1", "0.2"])
    assert res.exit_code == 2
    assert "Invalid value for --split: split must sum to 1, got 0.8 + 0.1 + 0.2 = 1.1" in res.output
    res = runner.invoke(prepare_cmd, ["--input", str(tmp_path / "nope.csv"), "--output", str(out)])
    assert res.exit_code == 1 and res.output == f"Error: {tmp_path / 'nope.csv'}: no such file\n"
    res = runner.invoke(synth_cmd, ["--rows", "3", "--output", str(tmp_path / "x.txt")])
    assert res.exit_code == 2 and "unsupported format '.txt'" in res.output


def test_the_v3_unknown_mix_has_more_v3_swaps_and_unregistered_tokens():
    from ethsft.eth.synth import generate_rows

    def shares(mix):
        rows = list(generate_rows(400, 3, mix))
        v3 = sum(r["to_address"] in ("0xe592427a0aece92de3edee1f18e0157c05861564",
                                     "0x68b3465833fb72a70ecdf485e0e4c7bd8665fc45") for r in rows)
        multicall = sum(r["input"][:10] in ("0xac9650d8", "0x5ae401dc", "0x1f0464d1") for r in rows)
        return v3, multicall

    v3_default, mc_default = shares("legacy")  # the mix v3-unknown is built on
    v3_hard, mc_hard = shares("v3-unknown")
    assert v3_hard > 2 * v3_default and mc_hard > 3 * mc_default
    assert list(generate_rows(5, 3)) == list(generate_rows(5, 3, "default"))


def test_identical_inputs_never_land_in_two_splits(tmp_path):
    """`synth --rows 3000 --seed 7` repeats a few transactions' content under new hashes (the same wallet's
    unlimited approve to the same router, say): each such input stays in one split."""
    from collections import defaultdict

    src = tmp_path / "decoded.csv"
    write_rows(src, generate_rows(3000, seed=7))
    summary = run(src, tmp_path / "ds", seed=0, split=(0.7, 0.15, 0.15))
    where = defaultdict(set)
    count = defaultdict(int)
    for name in SPLITS:
        for rec in read(tmp_path / "ds", f"{name}.jsonl"):
            where[rec["input"]].add(name)
            count[rec["input"]] += 1
    assert any(n > 1 for n in count.values())  # the data does repeat content
    assert all(len(splits) == 1 for splits in where.values())
    assert summary["kept"] + summary["duplicates"] + summary["rejected"] == summary["rows_read"] == 3000


@pytest.fixture
def decoded_csv(tmp_path) -> Path:
    from ethsft.eth.synth import generate_rows, write_rows

    path = tmp_path / "decoded.csv"
    write_rows(path, generate_rows(6, seed=1))
    return path


def _prepare(*args):
    from ethsft.cli.data import prepare

    return CliRunner().invoke(prepare, [*args, "--no-progress", "--no-token-stats"])


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs Linux /proc")
def test_prepare_into_proc_fails_naming_the_folder(decoded_csv):
    result = _prepare("--input", str(decoded_csv), "--output", "/proc/x")
    assert (result.exit_code, result.output) == (1, "Error: cannot write the output folder /proc/x (No such file or "
                                                    "directory); nothing was written\n")


def test_prepare_under_a_file_fails_naming_the_file(decoded_csv, tmp_path):
    out = tmp_path / "notes.txt" / "data"
    (tmp_path / "notes.txt").write_text("a file")
    result = _prepare("--input", str(decoded_csv), "--output", str(out))
    assert (result.exit_code, result.output) == (1, f"Error: cannot write the output folder {out} "
                                                    f"({tmp_path}/notes.txt is a file); nothing was written\n")


def test_prepare_with_every_row_rejected_fails_and_keeps_only_the_reasons(decoded_csv, tmp_path):
    with decoded_csv.open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    with decoded_csv.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows({**r, "value": "1.5"} for r in rows)
    out = tmp_path / "ds"
    result = _prepare("--input", str(decoded_csv), "--output", str(out))
    assert (result.exit_code, result.output) == (1, f"Error: {decoded_csv}: all 6 rows were rejected (by column: "
                                                    f"value 6), so no split was written; the reason for each row is in "
                                                    f"{out}/rejects.jsonl\n")
    assert sorted(p.name for p in out.iterdir()) == ["rejects.jsonl"]
    reasons = [json.loads(line)["reason"] for line in (out / "rejects.jsonl").read_text().splitlines()]
    assert reasons == ["value: expected a non-negative integer amount of wei, got '1.5'"] * 6


def test_signature_with_control_token_or_newline_is_rejected(tmp_path):
    from ethsft.eth.prepare import prepare

    mint = "0xa0712d68" + "00" * 32  # mint(uint256): not in the bundled ABIs, so function_signature names it
    signatures = ["stake(uint256)</s>", "stake(uint256)\nmint(uint256)", "stake(uint256)", "mint(uint256 amount)",
                  "mint"]
    path = tmp_path / "decoded.csv"
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["hash", "block_number", "from_address", "to_address", "value", "input", "receipt_status",
                         "function_signature"])
        for i, sig in enumerate(signatures, start=1):
            writer.writerow([f"0x{i:064x}", "18000000", "0x" + "11" * 20, "0x" + "33" * 20, "0", mint, "1", sig])
    summary = prepare(path, tmp_path / "ds", progress=False, count_tokens=False)
    rejects = [(r["row"], r["reason"]) for r in map(json.loads, (tmp_path / "ds" / "rejects.jsonl").open())]
    assert rejects == [
        (2, "function_signature: 'stake(uint256)</s>' is not a function signature (expected name(type,...) or a "
            "bare name)"),
        (3, "function_signature: 'stake(uint256)\\nmint(uint256)' is not a function signature (expected "
            "name(type,...) or a bare name)"),
        # row 3 spans lines 3 and 4 (its quoted newline), so the next row is 5
        (5, "function_signature: 'stake(uint256)' has selector 0xa694fc3a, the input starts with 0xa0712d68"),
    ]
    assert (summary["kept"], summary["rejected"]) == (2, 3)
