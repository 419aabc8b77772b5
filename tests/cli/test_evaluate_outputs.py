"""`ethsft infer` / `ethsft evaluate`: outputs checked before the model loads; a missing local folder is not a Hub id."""

import json
import os

from click.testing import CliRunner
from cli.test_paths import unwritable

from ethsft.cli.evaluate import evaluate, infer

TX = json.dumps({"from": "0x" + "11" * 20, "to": "0x" + "22" * 20, "value": "0", "input": "0x"})


def test_infer_output_checked_before_generating(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ro = unwritable(tmp_path)
    (tmp_path / "a-file").write_text("x")
    for output, message in ((f"{ro}/out.jsonl", f"--output {ro}/out.jsonl: cannot write there (Permission denied)"),
                            ("a-file/out.jsonl", "--output a-file/out.jsonl: cannot write there (a-file is a file)"),
                            ("", "--output is empty: name the file to write")):
        result = CliRunner().invoke(infer, ["--model", "embedded:tiny-mistral", "--output", output, TX])
        assert (result.exit_code, result.output) == (1, f"Error: {message}\n")
    assert sorted(os.listdir(tmp_path)) == ["a-file"] + (["read-only"] if ro != "/sys" else [])


def test_evaluate_output_checked_before_generating(small_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("x")
    for output, message in (("a-file/eval", "--output a-file/eval: cannot write there (a-file is a file)"),
                            ("", "--output is empty: name the folder to write")):
        result = CliRunner().invoke(evaluate, ["--model", "embedded:tiny-mistral", "--dataset", str(small_dataset),
                                               "--output", output])
        assert (result.exit_code, result.output) == (1, f"Error: {message}\n")


def test_a_missing_folder_is_not_taken_for_a_hub_id(small_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    result = CliRunner().invoke(evaluate, ["--model", "runs/nope", "--dataset", str(small_dataset)])
    assert (result.exit_code, result.output) == (1, "Error: model folder not found: runs/nope (runs/ has no nope)\n")
    assert sorted(os.listdir(tmp_path)) == ["datasets", "runs"] and os.listdir(tmp_path / "runs") == []
