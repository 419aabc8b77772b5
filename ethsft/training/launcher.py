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
    """The `accelerate launch` command for ``num_processes`` ranks; ``deepspeed`` is ddp/zero2/zero3 (a launch file),
    a shipped DeepSpeed JSON's name (zero2_offload) or a JSON path."""
    exe = shutil.which("accelerate")
    head = [exe, "launch"] if exe else [sys.executable, "-m", "accelerate.commands.launch"]
    name = deepspeed or "ddp"
    if name in LAUNCH_FILES:
        launch = ["--config_file", str(presets.launch_file(LAUNCH_FILES[name]))]
        if name != "ddp":  # the launch file names its JSON relative to a checkout: pass the installed one
            launch += ["--deepspeed_config_file", str(presets.deepspeed_file(f"{name}.json"))]
    else:
        found = Path(name) if Path(name).is_file() else presets.find_shipped("deepspeed", name)
        if found is None:
            raise ValueError(f"--deepspeed {name!r}: no such file; choose ddp (no DeepSpeed), a shipped DeepSpeed "
                             f"config ({', '.join(presets.names('deepspeed'))}) or a DeepSpeed JSON path")
        launch = ["--use_deepspeed", "--deepspeed_config_file", str(found)]
    return [*head, *launch, "--num_processes", str(num_processes), "-m", "ethsft.train", *train_args]


def use_shipped_deepspeed_config(env=os.environ) -> None:
    """Point a rank's DeepSpeed config at the installed copy when the launch file named it relative to a checkout.

    accelerate hands a launch file's ``deepspeed_config_file`` to every rank as ACCELERATE_DEEPSPEED_CONFIG_FILE,
    unresolved, and the shipped launch files say ``deepspeed/zero2.json``: from any other folder the rank would fail
    in accelerate's DeepSpeedPlugin. Call before anything builds accelerate's state (TrainingArguments does)."""
    value = env.get("ACCELERATE_DEEPSPEED_CONFIG_FILE", "")
    if value.endswith(".json") and not Path(value).is_file():  # it may also hold the JSON itself, or base64
        found = presets.find_shipped("deepspeed", value)
        if found is not None:
            env["ACCELERATE_DEEPSPEED_CONFIG_FILE"] = str(found)


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
