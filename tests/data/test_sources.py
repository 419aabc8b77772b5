"""--dataset beyond JSONL folders: a save_to_disk folder and a Hub-style dataset repo (data files, a named
configuration, its own split names) train like JSONL, and bad ones fail with the same kind of message. A Hub dataset
id (`--dataset OWNER/NAME`) is read by ``datasets.load_dataset`` from a local mock of the Hub (tests/hub_mock.py
serving a folder laid out as a Hub dataset repo, on 127.0.0.1; no network): the records are the served ones,
`ethsft train` trains on them, and an unknown id is one clear DataError."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from conftest import REPO, make_record, tiny_settings
from ethsft.data.records import DataError
from ethsft.data.sources import read_splits, source_kind
from hub_mock import MockHub

DATASET_ID = "ethsft-test/eth-intents"
SIZES = {("small", "train"): 8, ("small", "dev"): 4, ("large", "train"): 16, ("large", "dev"): 4}
READ = """
import json, sys
from ethsft.data.records import DataError
from ethsft.data.sources import read_splits
out = {"splits": read_splits(sys.argv[1], "small", {"validation": "dev"})}
try:
    read_splits(sys.argv[2])
except DataError as e:
    out["error"] = str(e)
print(json.dumps(out))
"""


def _records(n: int, seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    return [make_record(rng) for _ in range(n)]


@pytest.fixture
def disk_dataset(tmp_path):
    from datasets import Dataset, DatasetDict

    path = tmp_path / "saved"
    DatasetDict({"train": Dataset.from_list(_records(12)), "validation": Dataset.from_list(_records(4, 1))}
                ).save_to_disk(str(path))
    return path


@pytest.fixture
def repo_dataset(tmp_path):
    """A dataset laid out as on the Hub (``write_hub_layout``): configurations small (8 train rows) and large (16)."""
    seeds = {"small": 0, "large": 1}
    return write_hub_layout(tmp_path / "eth-intents", lambda config, split: _records(
        (8 if config == "small" else 16) if split == "train" else 4, seeds[config]))


def write_hub_layout(root, rows_for):
    """A dataset repo as on the Hub: parquet files under data/ with an extra column, a README declaring two
    configurations (small, large) whose validation split is called "dev"; ``rows_for(config, split)`` -> records."""
    from datasets import Dataset

    (root / "data").mkdir(parents=True)
    for config in ("small", "large"):
        for split in ("train", "dev"):
            rows = [{**r, "source": "synth"} for r in rows_for(config, split)]
            Dataset.from_list(rows).to_parquet(str(root / "data" / f"{config}-{split}.parquet"))
    (root / "README.md").write_text(
        "---\nconfigs:\n" + "".join(
            f"- config_name: {c}\n  data_files:\n  - split: train\n    path: data/{c}-train.parquet\n"
            f"  - split: dev\n    path: data/{c}-dev.parquet\n" for c in ("small", "large")) + "---\n")
    return root


def test_kinds(small_dataset, disk_dataset, repo_dataset, tmp_path):
    assert source_kind(small_dataset) == "jsonl"
    assert source_kind(disk_dataset) == "disk"
    assert source_kind(repo_dataset) == "local"
    assert source_kind("ethsft/eth-intents") == "hub"
    with pytest.raises(DataError) as e:
        source_kind(tmp_path / "missing")
    assert str(e.value) == (f"dataset folder not found: {tmp_path / 'missing'} (expected train.jsonl, "
                            "validation.jsonl, test.jsonl; make one with `ethsft prepare`)")


def test_save_to_disk_folder_trains(disk_dataset, tmp_path):
    from ethsft.training.recipe import build_trainer

    assert read_splits(disk_dataset)["validation"] == _records(4, 1)
    prepared = build_trainer(tiny_settings(disk_dataset, tmp_path / "out", "training.max_steps=2"))
    assert len(prepared.trainer.train_dataset) == 12 and len(prepared.trainer.eval_dataset) == 4
    before = {n: p.detach().clone() for n, p in prepared.trainer.model.named_parameters() if "lora_B" in n}
    prepared.trainer.train()
    after = dict(prepared.trainer.model.named_parameters())
    assert any(not (after[n] - b).abs().max().item() == 0 for n, b in before.items())  # the adapter learned


def test_hub_style_repo_with_config_and_split_names_trains(repo_dataset, tmp_path):
    from ethsft.training.recipe import build_trainer

    splits = read_splits(repo_dataset, "large", {"validation": "dev"})
    assert sorted(splits) == ["train", "validation"] and len(splits["train"]) == 16
    assert set(splits["train"][0]) == {"instruction", "input", "output"}  # extra columns left out
    s = tiny_settings(repo_dataset, tmp_path / "out", "training.max_steps=1", "data.dataset_config=small",
                      "data.validation_split=dev")
    prepared = build_trainer(s)
    assert len(prepared.trainer.train_dataset) == 8 and len(prepared.trainer.eval_dataset) == 4
    prepared.trainer.train()
    assert prepared.trainer.state.global_step == 1


def test_missing_column_and_bad_row_are_named(tmp_path):
    from datasets import Dataset, DatasetDict

    path = tmp_path / "cols"
    rows = [{"prompt": r["input"], "output": r["output"]} for r in _records(3)]
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(path))
    with pytest.raises(DataError) as e:
        read_splits(path)
    assert str(e.value) == (f"{path} [train]: no dataset format matches the columns (prompt, output; "
                            "instruction/input/output lacks 'instruction', 'input'; prompt/completion lacks "
                            "'completion'); expected the columns of instruction/input/output, prompt/completion, "
                            "messages or text")
    path = tmp_path / "rows"
    rows = _records(3)
    rows[2] = {**rows[2], "output": " "}
    DatasetDict({"train": Dataset.from_list(rows)}).save_to_disk(str(path))
    with pytest.raises(DataError) as e:
        read_splits(path)
    assert str(e.value) == (f"{path} [train] row 2: 'output' is empty; every record needs the answer the model "
                            "should learn")


def test_missing_train_split_is_named(disk_dataset, repo_dataset):
    with pytest.raises(DataError) as e:
        read_splits(disk_dataset, names={"train": "training"})
    assert str(e.value) == (f"{disk_dataset}: no 'training' split (it has: train, validation); name the training "
                            "split with data.train_split")


def test_unreachable_hub_id_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    with pytest.raises(DataError) as e:
        read_splits("ethsft-test/no-such-dataset")
    assert str(e.value).startswith("ethsft-test/no-such-dataset: ")
    assert "Traceback" not in str(e.value)
    json.dumps(str(e.value))


def served_records(config: str, split: str) -> list[dict]:
    rng = random.Random(f"{config}-{split}")
    return [make_record(rng) for _ in range(SIZES[config, split])]


@pytest.fixture(scope="module")
def hub(tmp_path_factory):
    """The mock Hub serving ``ethsft-test/eth-intents``: parquet under data/ (an extra column), a README declaring
    two configurations whose validation split is called "dev"."""
    root = write_hub_layout(tmp_path_factory.mktemp("hub-dataset") / "eth-intents", served_records)
    with MockHub() as mock:
        mock.serve_dataset(DATASET_ID, root)
        yield mock


def hub_env(hub, home) -> dict:
    """A subprocess's environment: online, huggingface_hub and datasets pointed at the mock, caches under ``home``."""
    return {**os.environ, "HF_ENDPOINT": hub.url, "HF_HUB_OFFLINE": "0", "HF_DATASETS_OFFLINE": "0", "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HOME": str(home / "hf-home"), "HF_DATASETS_CACHE": str(home / "datasets-cache"),
            "PYTHONPATH": str(REPO)}


@pytest.mark.slow  # subprocesses
def test_hub_id_reads_the_served_records_and_unknown_id_is_one_error(hub, tmp_path):
    proc = subprocess.run([sys.executable, "-c", READ, DATASET_ID, "ethsft-test/no-such-dataset"],
                          env=hub_env(hub, tmp_path), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["splits"] == {"train": served_records("small", "train"),  # the extra column left out
                             "validation": served_records("small", "dev")}
    error = out["error"]
    assert error.startswith("ethsft-test/no-such-dataset: dataset not found (Dataset 'ethsft-test/no-such-dataset' "
                            "doesn't exist on the Hub or cannot be accessed.)")  # the mock's 404 RepoNotFound
    assert "\n" not in error and "Traceback" not in error
    assert ("HEAD", "/datasets/ethsft-test/no-such-dataset/resolve/main/README.md") in hub.requests
    assert ("GET", f"/datasets/{DATASET_ID}/resolve/main/README.md") in hub.requests
    assert not hub.unexpected_about(DATASET_ID), hub.unexpected


@pytest.mark.slow  # subprocesses
def test_train_on_a_hub_dataset_id(hub, tmp_path, ethsft_cache):
    out = tmp_path / "run"
    env = {**hub_env(hub, tmp_path), "ETHSFT_CACHE": str(ethsft_cache)}
    proc = subprocess.run(
        [sys.executable, "-m", "ethsft", "train", "--config", str(REPO / "configs" / "tiny_cpu.yaml"),
         "--dataset", DATASET_ID, "--dataset-config", "small", "--output", str(out), "--batch-size", "4",
         "--set", "data.validation_split=dev", "--set", "training.max_steps=1", "--set", "logging.eval_steps=1",
         "--set", "logging.save_steps=1", "--set", "data.max_length=256"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["global_step"] == 1
    assert summary["samples"] == {"train": 8, "validation": 4}
    assert (out / "adapter_model.safetensors").is_file()
    assert not hub.unexpected_about(DATASET_ID), hub.unexpected
