"""The shipped presets, launch files and DeepSpeed JSONs, read from the installed package.

A checkout's top-level ``configs/``, ``launch/`` and ``deepspeed/`` are installed as the packages
``ethsft.presets``, ``ethsft.presets.launch`` and ``ethsft.presets.deepspeed`` (pyproject.toml's package-dir), so a
wheel carries them and an editable install reads the checkout's own files.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def _file(package: str, name: str) -> Path:
    return Path(str(resources.files(package).joinpath(name)))


def config(name: str) -> Path:
    """A preset YAML, e.g. ``config("demo_cpu.yaml")``."""
    return _file("ethsft.presets", name)


def launch_file(name: str) -> Path:
    """An accelerate launch file, e.g. ``launch_file("zero2.yaml")``."""
    return _file("ethsft.presets.launch", name)


def deepspeed_file(name: str) -> Path:
    """A DeepSpeed JSON, e.g. ``deepspeed_file("zero2.json")``."""
    return _file("ethsft.presets.deepspeed", name)
