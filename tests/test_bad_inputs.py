"""Bad input that used to get through (issue 17, item 6): each case fails, or is handled and said, in one message
naming the file, row or key; nothing is left half-written. Messages are asserted word for word."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import INSTRUCTION, REPO, tiny_settings, write_split
from ethsft.config.schema import ConfigError, load_settings
from ethsft.data.records import DataError, tokenize_split

GOOD = {"instruction": INSTRUCTION, "input": '{"function":"transfer"}', "output": '{"action":"transfer"}'}
LONG = {**GOOD, "input": "0x" + "ab" * 400}  # a prompt of ~420 Mistral tokens; its answer is 6
MISSING_MODEL = "/nonexistent/model"  # errors below must come before any model loads


# --- 1. overlong prompts keep their answer --------------------------------------------------------------------

def test_overlong_prompt_is_cut_in_the_middle_and_the_answer_kept_whole(tokenizer):
    from ethsft.data.formatting import render

    full = render(LONG, tokenizer)
    answer = [t for t, m in zip(full.input_ids, full.loss_mask) if m]
    ds, report = tokenize_split([GOOD, LONG], tokenizer, 64, "truncate", None, "train")
    ids, labels = ds["input_ids"][1], ds["labels"][1]
    assert len(ids) == 64 and labels == [-100] * 58 + answer and len(answer) == 6
    assert ids[-6:] == answer and ids[-1] == tokenizer.eos_token_id  # the whole answer and its </s>
    assert ids[:5] == full.input_ids[:5]  # <s> [INST] and the instruction's start
    assert tokenizer.decode(ids[-10:-6]) == "[/INST]"  # the assistant marker the answer follows
    assert (report.overlong, report.dropped) == (1, 0)
    assert report.message() == ("train: 1 of 2 samples longer than 64 tokens had their prompt cut in the middle to "
                                f"keep the answer whole; longest {len(full.input_ids)}. Set data.max_length or "
                                "data.overlong to change this.")


def test_a_sample_whose_answer_alone_does_not_fit_is_dropped_and_counted(tokenizer):
    long_answer = {**GOOD, "output": json.dumps({"action": "transfer", "note": "x" * 80})}
    ds, report = tokenize_split([LONG, long_answer], tokenizer, 24, "truncate", None, "train")
    assert len(ds) == 1 and sum(label != -100 for label in ds["labels"][0]) == 6
    assert (report.overlong, report.dropped) == (2, 1)
    assert report.message() == (f"train: 2 of 2 samples longer than 24 tokens: 1 had their prompt cut in the middle "
                                f"to keep the answer whole, 1 dropped (the answer alone does not fit); longest "
                                f"{report.longest}. Set data.max_length or data.overlong to change this.")
    with pytest.raises(DataError) as e:
        tokenize_split([long_answer], tokenizer, 24, "truncate", None, "train")
    assert str(e.value) == ("train: all 1 samples are longer than data.max_length=24 even with their prompt cut (the "
                            "answer alone does not fit); nothing is left to train on")
    with pytest.raises(DataError) as e:
        tokenize_split([LONG], tokenizer, 64, "drop", None, "validation")
    assert str(e.value) == ("validation: all 1 samples are longer than data.max_length=64 and data.overlong is "
                            "'drop'; nothing is left to evaluate on")


def test_chatml_prompt_cut_keeps_the_assistant_marker(chatml_tokenizer):
    ds, _ = tokenize_split([LONG], chatml_tokenizer, 40, "truncate", None, "train")
    ids, labels = ds["input_ids"][0], ds["labels"][0]
    start = next(i for i, label in enumerate(labels) if label != -100)
    assert labels[start:] == ids[start:]
    assert len(ids) <= 40 and chatml_tokenizer.decode(ids[start:]).endswith("<|im_end|>\n")
    assert chatml_tokenizer.decode(ids[:start]).endswith("<|im_end|>\n<|im_start|>assistant\n")


def test_every_prompt_overlong_still_trains_evaluates_and_writes_the_summary(small_dataset, tmp_path):
    """The run that trained on no answer tokens and then died with KeyError 'eval_loss' (metric_for_best_model)."""
    from ethsft.training.recipe import run

    out = tmp_path / "out"
    s = tiny_settings(small_dataset, out, "data.max_length=40", "training.max_steps=2", "logging.eval_steps=2",
                      "logging.save_steps=2")
    summary = run(s)
    assert summary["overlong_samples"] == {"train": 16, "validation": 8}  # every prompt is longer than 40
    assert summary["overlong_dropped"] == {"train": 0, "validation": 0}
    assert math.isfinite(summary["final_eval_loss"])
    assert json.loads((out / "run_summary.json").read_text())["overlong_samples"] == {"train": 16, "validation": 8}


def test_no_validation_sample_left_fails_before_the_model_loads(small_dataset, tmp_path):
    from ethsft.cli.train import main

    val = [{**GOOD, "output": json.dumps({"action": "transfer", "note": "x" * 80})}] * 3
    write_split(small_dataset / "validation.jsonl", val)
    result = CliRunner().invoke(main, ["--config", str(REPO / "configs" / "tiny_cpu.yaml"), "--dataset",
                                       str(small_dataset), "--output", str(tmp_path / "out"), "--set",
                                       "data.max_length=24", "--base-model", "embedded:tiny-mistral"])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1:] == ["Test samples: 4"]  # read, then tokenized: no model loaded
    assert result.stderr.splitlines()[-1:] == [
        "Error: validation: all 3 samples are longer than data.max_length=24 even with their prompt cut (the answer "
        "alone does not fit); nothing is left to evaluate on"]


# --- 2. numbers out of range fail in the config, naming file and key ------------------------------------------

def test_negative_batch_size_fails_at_dry_run_naming_file_and_key(tmp_path):
    from ethsft.cli.train import main

    config = tmp_path / "bad.yaml"
    config.write_text("training:\n  per_device_train_batch_size: -1\n")
    result = CliRunner().invoke(main, ["--config", str(config), "--dry-run"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == (f"Error: {config}: training.per_device_train_batch_size must be "
                                              "positive, got -1")
    result = CliRunner().invoke(main, ["--batch-size", "-1", "--dry-run"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == "Error: Invalid value for '--batch-size': -1 is not in the range x>=1."


@pytest.mark.parametrize("item, message", [
    ("training.gradient_accumulation_steps=0", "training.gradient_accumulation_steps must be positive, got 0"),
    ("training.per_device_eval_batch_size=0", "training.per_device_eval_batch_size must be positive, got 0"),
    ("data.max_length=-5", "data.max_length must be positive, got -5"),
    ("lora.r=0", "lora.r must be positive, got 0"),
    ("lora.alpha=-16", "lora.alpha must be positive, got -16"),
    ("lora.dropout=1.5", "lora.dropout must be >= 0 and < 1, got 1.5"),
    ("training.learning_rate=0", "training.learning_rate must be positive, got 0.0"),
    ("training.num_train_epochs=-1", "training.num_train_epochs must be positive, got -1.0"),
    ("training.max_steps=0", "training.max_steps must be -1 (train for num_train_epochs) or positive, got 0"),
    ("logging.eval_steps=0", "logging.eval_steps must be positive, got 0"),
    ("logging.eval_accuracy_samples=-1", "logging.eval_accuracy_samples must be >= 0, got -1"),
])
def test_out_of_range_numbers_name_the_key(item, message):
    with pytest.raises(ConfigError) as e:
        load_settings(None, None, [item])
    assert str(e.value) == f"--set {item.split('=')[0]}: {message}"


# --- 3. infer: broken JSON and non-objects fail before the model loads ----------------------------------------

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


# --- 4 and 6. prepare: an unwritable --output and every row rejected ------------------------------------------

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


# --- 7. a function_signature with </s> or a newline is checked like any other ---------------------------------

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


# --- 8. evaluate: a folder without adapter, a reference that is not JSON --------------------------------------

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


# --- 5. no validation.jsonl: said in one line, evaluation off ---------------------------------------------------

def test_missing_validation_split_turns_evaluation_off_with_a_notice(small_dataset, tmp_path):
    from transformers import EarlyStoppingCallback

    from ethsft.training.recipe import build_trainer

    (small_dataset / "validation.jsonl").unlink()
    out = tmp_path / "out"
    prepared = build_trainer(tiny_settings(small_dataset, out, "training.early_stopping_patience=2"))
    args = prepared.trainer.args
    assert (args.eval_strategy, args.load_best_model_at_end) == ("no", False)
    assert not any(isinstance(c, EarlyStoppingCallback) for c in prepared.trainer.callback_handler.callbacks)
    assert (f"Note: no validation split in {small_dataset}: evaluation, load_best_model_at_end and early stopping "
            "off; the adapter saved is the last step's") in (out / "training_logs.txt").read_text().splitlines()
