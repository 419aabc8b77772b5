"""prepare: its output folder (never the input's, never over files another tool wrote), a 0 split fraction, and
reading problems named at their line: a bad byte, a semicolon CSV, a value above uint256."""

import hashlib
import json
import os

import pytest

from ethsft.data.records import DataError
from ethsft.data.sources import read_splits
from ethsft.eth.prepare import prepare
from ethsft.eth.synth import generate_rows, write_rows


def sha(path) -> str:
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


@pytest.fixture
def raw(tmp_path):
    path = tmp_path / "rawdir" / "decoded.csv"
    path.parent.mkdir()
    write_rows(str(path), generate_rows(60, 0, "default"))
    return path


def run(inp, out, **kw):
    return prepare(inp, out, progress=False, count_tokens=False, **kw)


def test_output_folder_holding_the_input_is_refused(raw):
    (raw.parent / "test.jsonl").write_text("my own notes\n")
    before = {p.name: sha(p) for p in raw.parent.iterdir()}
    with pytest.raises(DataError) as e:
        run(raw, raw.parent)
    assert str(e.value) == (f"--output {raw.parent} holds the input {raw}; write the dataset to another folder "
                            "(prepare writes train/validation/test.jsonl there)")
    assert {p.name: sha(p) for p in raw.parent.iterdir()} == before


def test_files_prepare_did_not_write_are_kept(raw, tmp_path):
    out = tmp_path / "data"
    out.mkdir()
    (out / "train.jsonl").write_text('{"instruction": "mine", "input": "a", "output": "b"}\n')
    before = sha(out / "train.jsonl")
    with pytest.raises(DataError) as e:
        run(raw, out)
    assert str(e.value) == (f"--output {out} already holds train.jsonl, which `ethsft prepare` did not write "
                            "(no prepare_summary.json beside it); choose another folder or move it away")
    assert sha(out / "train.jsonl") == before and sorted(os.listdir(out)) == ["train.jsonl"]


def test_a_previous_prepare_is_replaced(raw, tmp_path):
    out = tmp_path / "data"
    first = run(raw, out, seed=0)
    second = run(raw, out, seed=1)
    assert first["kept"] == second["kept"] and second["seed"] == 1


def test_zero_test_fraction_leaves_an_empty_test_split_that_training_does_without(raw, tmp_path):
    out = tmp_path / "data"
    summary = run(raw, out, split=(0.8, 0.2, 0.0))
    assert summary["splits"]["test"] == 0 and (out / "test.jsonl").read_bytes() == b""
    splits = read_splits(out)  # what `ethsft train` reads
    assert sorted(splits) == ["train", "validation"]
    assert len(splits["train"]) + len(splits["validation"]) == summary["kept"]


HEADER = "hash,block_number,from_address,to_address,value,input,receipt_status\n"
ROW = "0x{i:064x},18000000,0x" + "11" * 20 + ",0x" + "22" * 20 + ",0,0x,1\n"


def test_a_bad_byte_is_reported_on_its_line(tmp_path):
    path = tmp_path / "decoded.csv"
    rows = [ROW.format(i=i).encode() for i in range(3000)]  # past the first read-ahead chunk of a text reader
    rows[2500] = rows[2500].replace(b",0x,1", b",0x\xff,1")
    path.write_bytes(HEADER.encode() + b"".join(rows))
    with pytest.raises(DataError) as e:
        run(path, tmp_path / "out")
    assert str(e.value) == (f"{path}: line 2502: not UTF-8 text (byte b'\\xff' at column 167); re-encode the file "
                            "as UTF-8")
    assert not (tmp_path / "out").exists()


def test_a_semicolon_csv_gets_a_delimiter_hint(tmp_path):
    path = tmp_path / "decoded.csv"
    path.write_text(HEADER.replace(",", ";") + ROW.format(i=1).replace(",", ";"))
    with pytest.raises(DataError) as e:
        run(path, tmp_path / "out")
    assert str(e.value).endswith("; the header looks semicolon-separated, and prepare reads comma-separated CSV "
                                 "(ethereum-etl's format): convert it, e.g. with pandas.read_csv(path, sep=...)"
                                 ".to_csv(...)")
    assert str(e.value).startswith(f"{path}: row 1: missing required column(s) 'hash', ")


def test_a_value_above_uint256_is_rejected(tmp_path):
    path = tmp_path / "decoded.csv"
    path.write_text(HEADER + ROW.format(i=1) + ROW.format(i=2).replace(",0,0x,", f",{2**256},0x,")
                    + ROW.format(i=3).replace(",0,0x,", f",{2**256 - 1},0x,"))
    summary = run(path, tmp_path / "out")
    assert (summary["kept"], summary["rejected"]) == (2, 1)
    (reject,) = [json.loads(line) for line in (tmp_path / "out" / "rejects.jsonl").read_text().splitlines()]
    assert (reject["row"], reject["reason"]) == (
        3, "value: '1157920892373161954235709850086879078532699...' is above 2^256-1, the largest value a "
           "transaction can carry")
