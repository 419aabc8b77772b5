"""The shipped presets, launch files and DeepSpeed JSONs, read from the installed package.

``ethsft/presets/`` links to a checkout's top-level ``configs/``, ``launch/`` and ``deepspeed/``: an editable install
reads the checkout's own files, and a wheel carries copies of them.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def _file(package: str, name: str) -> Path:
    return Path(str(resources.files(package).joinpath(name)))


def config(name: str) -> Path:
    """A preset YAML, e.g. ``config("demo_cpu.yaml")``."""
    return _file("ethsft.presets", f"configs/{name}")


def launch_file(name: str) -> Path:
    """An accelerate launch file, e.g. ``launch_file("zero2.yaml")``."""
    return _file("ethsft.presets", f"launch/{name}")


def deepspeed_file(name: str) -> Path:
    """A DeepSpeed JSON, e.g. ``deepspeed_file("zero2.json")``."""
    return _file("ethsft.presets", f"deepspeed/{name}")
