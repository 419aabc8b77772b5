"""Resume refuses a checkpoint it cannot continue faithfully, in one line, before the model loads."""

from __future__ import annotations

import hashlib
import random
import shutil

import pytest
from conftest import tiny_settings

from ethsft.config.schema import ConfigError

SHORT = ("training.max_steps=2", "logging.save_steps=2", "logging.eval_steps=2", "logging.eval_accuracy_samples=0")


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A 2-step tiny run with its checkpoint-2, and the dataset (train split only) it trained on."""
    from conftest import make_record, write_split

    from ethsft.training.recipe import run

    data = tmp_path_factory.mktemp("resume") / "datasets"
    data.mkdir()
    rng = random.Random(0)
    write_split(data / "train.jsonl", [make_record(rng) for _ in range(16)])
    run(tiny_settings(data, data.parent / "run", *SHORT))
    return data.parent / "run", data


@pytest.fixture
def damaged(finished, tmp_path):
    run_dir, data = finished
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    return copy, data


def resume(out, data, *sets):
    from ethsft.training.recipe import run

    with pytest.raises(ConfigError) as e:
        run(tiny_settings(data, out, *SHORT, *sets), "latest")
    return str(e.value)


@pytest.mark.parametrize("name, what", [("optimizer.pt", "optimizer state"),
                                        ("scheduler.pt", "learning-rate scheduler state"),
                                        ("rng_state.pth", "RNG state")])
def test_missing_state_is_refused(damaged, name, what):
    out, data = damaged
    (out / "checkpoint-2" / name).unlink()
    assert resume(out, data) == (f"--resume-from-checkpoint: {out}/checkpoint-2 has no {name} ({what}); resuming "
                                 "without it would not continue the same run. Resume from another checkpoint, or "
                                 "train anew")


def test_truncated_files_are_refused(damaged):
    out, data = damaged
    optimizer = out / "checkpoint-2" / "optimizer.pt"
    optimizer.write_bytes(optimizer.read_bytes()[:1000])
    assert resume(out, data) == (f"--resume-from-checkpoint: {out}/checkpoint-2: optimizer.pt is truncated or "
                                 "damaged (optimizer state); resume from another checkpoint, or train anew")
    weights = out / "checkpoint-2" / "adapter_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100_000])
    assert resume(out, data) == (f"--resume-from-checkpoint: {out}/checkpoint-2: adapter_model.safetensors is "
                                 "truncated or damaged (Error while deserializing header: incomplete metadata, file "
                                 "not fully covered); resume from another checkpoint")


def test_a_shape_change_names_the_key(damaged):
    out, data = damaged
    before = hashlib.sha256((out / "checkpoint-2" / "adapter_model.safetensors").read_bytes()).hexdigest()
    assert resume(out, data, "lora.r=8") == (
        f"--resume-from-checkpoint: {out}/checkpoint-2 was trained with lora.r=32, the config says lora.r=8: a resume "
        "keeps the adapter's shape (set lora.r=32, or train anew with --overwrite)")
    assert resume(out, data, "lora.modules_to_save=[]") == (
        f"--resume-from-checkpoint: {out}/checkpoint-2 was trained with lora.modules_to_save=['lm_head'], the config "
        "says []: a resume keeps the adapter's shape (set lora.modules_to_save=['lm_head'], or train anew with "
        "--overwrite)")
    after = hashlib.sha256((out / "checkpoint-2" / "adapter_model.safetensors").read_bytes()).hexdigest()
    assert after == before


def test_an_intact_checkpoint_resumes(damaged):
    from ethsft.training.recipe import run

    out, data = damaged
    summary = run(tiny_settings(data, out, "training.max_steps=3", *SHORT[1:]), "latest")
    assert summary["resumed_from"] == str(out / "checkpoint-2") and summary["global_step"] == 3
