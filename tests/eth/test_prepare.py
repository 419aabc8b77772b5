"""prepare's output folder: never the input's folder, never over files another tool wrote; a 0 split fraction."""

import hashlib
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
