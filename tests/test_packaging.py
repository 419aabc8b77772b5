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


def ethsft(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(site))  # ahead of the editable install's finder
    return subprocess.run([sys.executable, "-m", "ethsft", *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_the_wheel_runs_demo_bench_and_a_packaged_preset_away_from_the_checkout(installed_wheel, tmp_path,
                                                                                small_dataset):
    shipped = installed_wheel / "ethsft" / "presets"
    assert not (shipped / "configs").is_symlink()  # copies, not the checkout's links
    assert (shipped / "configs" / "demo_cpu.yaml").is_file() and (shipped / "launch" / "zero2.yaml").is_file()
    assert (shipped / "deepspeed" / "zero2.json").is_file()
    where = ethsft(installed_wheel, tmp_path, "--help")
    assert where.returncode == 0, where.stderr
    for args in (("demo", "--help"), ("bench", "--help")):
        done = ethsft(installed_wheel, tmp_path, *args)
        assert done.returncode == 0, done.stderr
    config = shipped / "configs" / "tiny_cpu.yaml"
    done = ethsft(installed_wheel, tmp_path, "train", "--config", str(config), "--dataset", str(small_dataset),
                  "--output", str(tmp_path / "run"), "--num-processes", "2", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert str(shipped / "launch" / "ddp.yaml") in done.stdout + done.stderr
    probe = subprocess.run([sys.executable, "-c", "import ethsft; print(ethsft.__file__)"], cwd=tmp_path,
                           env=dict(os.environ, PYTHONPATH=str(installed_wheel)), capture_output=True, text=True)
    assert probe.stdout.strip() == str(installed_wheel / "ethsft" / "__init__.py")
