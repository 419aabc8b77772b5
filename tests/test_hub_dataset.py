"""`--dataset OWNER/NAME`: a Hugging Face Hub dataset id, read by ``datasets.load_dataset`` from a local mock of the
Hub (tests/hub_mock.py serving a folder laid out as a Hub dataset repo, on 127.0.0.1; no network). The records are
the served ones, `ethsft train` trains on them, and an unknown id is one clear DataError."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys

import pytest

from conftest import REPO, make_record
from hub_mock import MockHub
from test_sources import write_hub_layout

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
