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


def config_names() -> list[str]:
    """The shipped presets' stems, e.g. ``tiny_cpu``, ``80gb``."""
    folder = _file("ethsft.presets", "configs")
    return sorted(p.stem for p in folder.iterdir() if p.suffix == ".yaml")


def find_config(name: str) -> Path | None:
    """The shipped preset ``name`` names (``tiny_cpu``, ``tiny_cpu.yaml``, ``configs/tiny_cpu.yaml``), or None."""
    stem = Path(name).name.removesuffix(".yaml")
    return config(f"{stem}.yaml") if stem in config_names() else None
