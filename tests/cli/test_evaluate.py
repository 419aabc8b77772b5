"""`ethsft evaluate` and `ethsft infer` (ethsft/cli/evaluate.py): bad arguments fail before any model loads, naming
the argument, file and line."""

from __future__ import annotations

import json

from click.testing import CliRunner

from conftest import INSTRUCTION

MISSING_MODEL = "/nonexistent/model"  # errors below must come before any model loads


def test_infer_rejects_broken_json_and_non_objects_before_loading(tmp_path):
    from ethsft.cli.evaluate import infer
    from ethsft.inference.loading import as_record

    expected = "expected a JSON object (a transaction, its model input, a prepared record or a decoded.csv row)"
    runner = CliRunner()
    result = runner.invoke(infer, ["--model", MISSING_MODEL, '{"from":"0x' + "1" * 40 + '"}', '{"from":"0xab", '])
    assert result.exit_code == 1
    assert result.output == ("Error: argument 2: malformed JSON (Expecting property name enclosed in double quotes at "
                             f"column 16) in '{{\"from\":\"0xab\",'; {expected}\n")
    result = runner.invoke(infer, ["--model", MISSING_MODEL, "[1,2]"])
    assert (result.exit_code, result.output) == (1, f"Error: argument 1: {expected}, got a JSON array: '[1,2]'\n")
    result = runner.invoke(infer, ["--model", MISSING_MODEL, "-"], input='{"to":"0x12"}\n\n"text"\n')
    assert (result.exit_code, result.output) == (1, f"Error: stdin line 3: {expected}, got a JSON string: '\"text\"'\n")
    bad = tmp_path / "txs.json"
    bad.write_text("[1, {")
    result = runner.invoke(infer, ["--model", MISSING_MODEL, "--file", str(bad)])
    assert (result.exit_code, result.output) == (1, f"Error: {bad}: malformed JSON (Expecting property name enclosed "
                                                    "in double quotes at line 1 column 6); expected a JSON object or "
                                                    "a list of them\n")
    # free text (no JSON at all) is still the model input verbatim
    assert as_record(" send 1 ETH to vitalik.eth ") == {"instruction": INSTRUCTION,
                                                        "input": "send 1 ETH to vitalik.eth"}


def test_evaluate_on_a_folder_without_adapter_says_so(small_dataset, tmp_path):
    from ethsft.cli.evaluate import evaluate

    run_dir = tmp_path / "run"
    run_dir.mkdir()
    result = CliRunner().invoke(evaluate, ["--model", str(run_dir), "--dataset", str(small_dataset)])
    expected = (f"Error: {run_dir}: no adapter here (no adapter_config.json) and no model either (no config.json); "
                "pass a training run's output folder, a merged model folder, a hub id or embedded:tiny-mistral")
    assert (result.exit_code, result.output) == (1, expected + "\n")
    for step in (2, 10):  # an interrupted run: its checkpoints hold adapters
        (run_dir / f"checkpoint-{step}").mkdir()
        (run_dir / f"checkpoint-{step}" / "adapter_config.json").write_text("{}")
    result = CliRunner().invoke(evaluate, ["--model", str(run_dir), "--dataset", str(small_dataset)])
    assert (result.exit_code, result.output) == (
        1, expected + f"; the run's newest checkpoint holds one: --model {run_dir}/checkpoint-10\n")


def test_evaluate_names_file_and_line_of_a_reference_that_is_not_json(small_dataset):
    from ethsft.cli.evaluate import evaluate

    test = small_dataset / "test.jsonl"
    lines = test.read_text().splitlines()
    lines[2] = json.dumps({**json.loads(lines[2]), "output": "transfer to 0x12"})
    test.write_text(lines[0] + "\n\n" + "\n".join(lines[1:]) + "\n")  # a blank line 2: the bad record is line 4
    result = CliRunner().invoke(evaluate, ["--model", MISSING_MODEL, "--dataset", str(small_dataset)])
    assert (result.exit_code, result.output) == (1, f"Error: {test}:4: 'output' is not a JSON object: 'transfer to "
                                                    "0x12'; the reference answer must be the intent as a JSON object\n")
