"""A built wheel works outside the checkout: presets, launch files and DeepSpeed JSONs ship inside the package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """The wheel pip builds from this checkout, unpacked into a folder of its own (dependencies: this venv's)."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(REPO)],
                   check=True, capture_output=True)
    (wheel,) = (tmp / "dist").glob("ethsft-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp / "site"),
                    str(wheel)], check=True, capture_output=True)
    return tmp / "site"


# one process for every command (each process pays the torch and transformers imports)
COMMANDS = """
import json, sys
from click.testing import CliRunner
import ethsft
from ethsft.cli import cli

config, dataset, output = sys.argv[1:4]
runs = {name: CliRunner().invoke(cli, args) for name, args in {
    "demo": ["demo", "--help"], "bench": ["bench", "--help"],
    "train": ["train", "--config", config, "--dataset", dataset, "--output", output, "--num-processes", "2",
              "--dry-run"]}.items()}
print(json.dumps({"package": ethsft.__file__, **{name: [r.exit_code, r.output + getattr(r, "stderr", "")]
                                                    for name, r in runs.items()}}))
"""


@pytest.mark.slow  # subprocesses
def test_the_wheel_runs_demo_bench_and_a_packaged_preset_away_from_the_checkout(installed_wheel, tmp_path,
                                                                                small_dataset):
    import json

    shipped = installed_wheel / "ethsft" / "presets"
    assert not (shipped / "configs").is_symlink()  # copies, not the checkout's links
    assert (shipped / "configs" / "demo_cpu.yaml").is_file() and (shipped / "launch" / "zero2.yaml").is_file()
    assert (shipped / "deepspeed" / "zero2.json").is_file()
    done = subprocess.run([sys.executable, "-c", COMMANDS, str(shipped / "configs" / "tiny_cpu.yaml"),
                           str(small_dataset), str(tmp_path / "run")], cwd=tmp_path, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(installed_wheel)))  # ahead of the editable install
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["package"] == str(installed_wheel / "ethsft" / "__init__.py")
    assert out["demo"][0] == 0 and "Fetch a real chat model" in out["demo"][1]
    assert out["bench"][0] == 0
    assert out["train"][0] == 0, out["train"][1]
    assert str(shipped / "launch" / "ddp.yaml") in out["train"][1]
