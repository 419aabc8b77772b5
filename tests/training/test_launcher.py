"""`ethsft train --num-processes N --deepspeed zero2` hands over to accelerate with the repo's launch files."""

from __future__ import annotations

from pathlib import Path

import pytest

from ethsft.training.launcher import accelerate_command, strip_launch_flags

REPO = Path(__file__).resolve().parents[2]


def test_strip_launch_flags_keeps_everything_else():
    argv = ["--config", "c.yaml", "--num-processes", "4", "--deepspeed", "zero2", "--set", "lora.r=8",
            "--deepspeed=zero3", "--num-processes=2", "--output", "o"]
    assert strip_launch_flags(argv) == ["--config", "c.yaml", "--set", "lora.r=8", "--output", "o"]


def test_named_deepspeed_uses_the_launch_file():
    shipped = REPO / "ethsft" / "presets"  # links to the top-level launch/ and deepspeed/ (copies in a wheel)
    cmd = accelerate_command(4, "zero2", ["--config", "c.yaml"])
    assert cmd[cmd.index("--config_file"):] == ["--config_file", str(shipped / "launch" / "zero2.yaml"),
                                                "--deepspeed_config_file", str(shipped / "deepspeed" / "zero2.json"),
                                                "--num_processes", "4", "-m", "ethsft.train", "--config", "c.yaml"]
    assert (shipped / "launch" / "zero2.yaml").resolve() == (REPO / "launch" / "zero2.yaml").resolve()
    ddp = accelerate_command(2, None, [])
    assert ddp[ddp.index("--config_file"):] == ["--config_file", str(shipped / "launch" / "ddp.yaml"),
                                                "--num_processes", "2", "-m", "ethsft.train"]


def test_json_path_and_bad_names():
    cmd = accelerate_command(2, str(REPO / "deepspeed" / "zero3.json"), [])
    assert "--use_deepspeed" in cmd and str(REPO / "deepspeed" / "zero3.json") in cmd
    with pytest.raises(ValueError) as e:
        accelerate_command(2, "zero4", [])
    assert str(e.value) == "--deepspeed 'zero4': choose zero2, zero3, ddp (no DeepSpeed), or a DeepSpeed JSON path"


def test_every_launch_file_names_an_existing_deepspeed_json_and_no_hyperparameters():
    import yaml

    for path in sorted((REPO / "launch").glob("*.yaml")):
        text = path.read_text()
        assert text.startswith("# ") and "accelerate launch --config_file launch/" + path.name in text
        cfg = yaml.safe_load(text)
        for key in ("gradient_accumulation_steps", "gradient_clipping", "mixed_precision", "learning_rate"):
            assert key not in cfg and key not in cfg.get("deepspeed_config", {}), (path.name, key)
        ds = cfg.get("deepspeed_config", {}).get("deepspeed_config_file")
        if ds:
            assert (REPO / ds).is_file()
