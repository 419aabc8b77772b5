"""`ethsft train --num-processes N [--deepspeed zero2]`: a convenience that hands over to `accelerate launch`
with the repository's launch files, so a user need not write the accelerate command by hand."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from ethsft.config import presets

LAUNCH_FILES = {"ddp": "ddp.yaml", "zero2": "zero2.yaml", "zero3": "zero3.yaml"}


def inside_launcher() -> bool:
    """True when accelerate, torchrun or deepspeed already started this process as one rank."""
    return "LOCAL_RANK" in os.environ or "ACCELERATE_MIXED_PRECISION" in os.environ


def accelerate_command(num_processes: int, deepspeed: str | None, train_args: list[str]) -> list[str]:
    """The `accelerate launch` command for ``num_processes`` ranks; ``deepspeed`` is ddp/zero2/zero3 or a JSON path."""
    exe = shutil.which("accelerate")
    head = [exe, "launch"] if exe else [sys.executable, "-m", "accelerate.commands.launch"]
    if deepspeed and deepspeed.endswith(".json"):
        if not Path(deepspeed).is_file():
            raise FileNotFoundError(f"--deepspeed: file not found: {deepspeed}")
        launch = ["--use_deepspeed", "--deepspeed_config_file", deepspeed]
    else:
        name = deepspeed or "ddp"
        if name not in LAUNCH_FILES:
            raise ValueError(f"--deepspeed {name!r}: choose zero2, zero3, ddp (no DeepSpeed), or a DeepSpeed JSON path")
        launch = ["--config_file", str(presets.launch_file(LAUNCH_FILES[name]))]
        if name != "ddp":  # the launch file names its JSON relative to the repo; from elsewhere it must be absolute
            launch += ["--deepspeed_config_file", str(presets.deepspeed_file(f"{name}.json"))]
    return [*head, *launch, "--num_processes", str(num_processes), "-m", "ethsft.train", *train_args]


def strip_launch_flags(argv: list[str]) -> list[str]:
    """The user's train arguments without --num-processes/--deepspeed (and their values)."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
            continue
        if arg in ("--num-processes", "--deepspeed"):
            skip = True
            continue
        if arg.startswith(("--num-processes=", "--deepspeed=")):
            continue
        out.append(arg)
    return out
