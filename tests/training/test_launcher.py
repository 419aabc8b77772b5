"""`ethsft train --num-processes N --deepspeed zero2` hands over to accelerate with the shipped launch files; a rank
finds the shipped DeepSpeed JSON a launch file names relative to a checkout."""

from __future__ import annotations

from pathlib import Path

import pytest

from ethsft.training.launcher import accelerate_command, strip_launch_flags, use_shipped_deepspeed_config

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


def test_json_path_shipped_json_names_and_bad_names(tmp_path, monkeypatch):
    shipped = REPO / "ethsft" / "presets" / "deepspeed"
    cmd = accelerate_command(2, str(REPO / "deepspeed" / "zero3.json"), [])
    assert cmd[cmd.index("--use_deepspeed"):cmd.index("--num_processes")] == [
        "--use_deepspeed", "--deepspeed_config_file", str(REPO / "deepspeed" / "zero3.json")]
    monkeypatch.chdir(tmp_path)  # no deepspeed/ here: the checkout-relative path names the installed copy
    for name, file in (("deepspeed/zero3.json", "zero3.json"), ("zero2_offload", "zero2_offload.json")):
        cmd = accelerate_command(2, name, [])
        assert cmd[cmd.index("--use_deepspeed"):cmd.index("--num_processes")] == [
            "--use_deepspeed", "--deepspeed_config_file", str(shipped / file)], name
    for bad in ("zero4", "elsewhere/zero2.json"):
        with pytest.raises(ValueError) as e:
            accelerate_command(2, bad, [])
        assert str(e.value) == (f"--deepspeed {bad!r}: no such file; choose ddp (no DeepSpeed), a shipped DeepSpeed "
                                "config (zero2, zero2_offload, zero3) or a DeepSpeed JSON path")


def test_a_rank_reads_the_installed_json_where_the_launch_file_named_it_relative_to_a_checkout(tmp_path,
                                                                                               monkeypatch):
    monkeypatch.chdir(tmp_path)
    env = {"ACCELERATE_DEEPSPEED_CONFIG_FILE": "deepspeed/zero2.json"}
    use_shipped_deepspeed_config(env)
    assert env == {"ACCELERATE_DEEPSPEED_CONFIG_FILE": str(REPO / "ethsft" / "presets" / "deepspeed" / "zero2.json")}
    (tmp_path / "deepspeed").mkdir()
    (tmp_path / "deepspeed" / "zero2.json").write_text("{}")
    # the user's own file, a path elsewhere, an inline JSON and no DeepSpeed at all stay as accelerate set them
    for value in ("deepspeed/zero2.json", "theirs/zero2.json", '{"zero_optimization": {"stage": 2}}', None):
        env = {} if value is None else {"ACCELERATE_DEEPSPEED_CONFIG_FILE": value}
        use_shipped_deepspeed_config(env)
        assert env == ({} if value is None else {"ACCELERATE_DEEPSPEED_CONFIG_FILE": value})


def test_every_launch_file_names_an_existing_deepspeed_json_and_no_hyperparameters():
    import yaml

    for path in sorted((REPO / "launch").glob("*.yaml")):
        text = path.read_text()
        assert text.startswith("# ") and ('"$(ethsft presets --path ' + path.name + ')"') in text  # runs anywhere
        cfg = yaml.safe_load(text)
        for key in ("gradient_accumulation_steps", "gradient_clipping", "mixed_precision", "learning_rate"):
            assert key not in cfg and key not in cfg.get("deepspeed_config", {}), (path.name, key)
        ds = cfg.get("deepspeed_config", {}).get("deepspeed_config_file")
        if ds:
            assert (REPO / ds).is_file()
