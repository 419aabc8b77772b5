"""`ethsft presets`: what the package ships, and one file's installed path for a launch line."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from ethsft.cli.presets import main

SHIPPED = Path(__file__).resolve().parents[2] / "ethsft" / "presets"


def test_lists_every_kind_with_its_folder_and_summaries():
    r = CliRunner().invoke(main, [])
    assert r.exit_code == 0, r.output
    lines = r.output.splitlines()
    assert lines[0] == f"Configs (ethsft train --config NAME), in {SHIPPED / 'configs'}:"
    assert (f'Launch files (accelerate launch --config_file "$(ethsft presets --path NAME)"), in {SHIPPED / "launch"}:'
            in lines)
    assert "  zero3.json          ZeRO-3: parameters sharded too." in lines
    assert "  12gb                = training_config" in lines


def test_path_prints_only_the_installed_path():
    for name, path in (("zero2.yaml", SHIPPED / "launch" / "zero2.yaml"),
                       ("zero2.json", SHIPPED / "deepspeed" / "zero2.json"),
                       ("12gb", SHIPPED / "configs" / "training_config.yaml"),
                       ("launch/ddp.yaml", SHIPPED / "launch" / "ddp.yaml")):
        r = CliRunner().invoke(main, ["--path", name])
        assert (r.exit_code, r.output) == (0, f"{path}\n"), name
        assert path.is_file()


def test_path_refuses_unknown_and_ambiguous_names():
    r = CliRunner().invoke(main, ["--path", "zero2"])
    assert r.exit_code == 2
    assert ("Error: --path zero2: names several shipped files, say which: launch/zero2.yaml, deepspeed/zero2.json"
            in r.output)
    r = CliRunner().invoke(main, ["--path", "zero9.yaml"])
    assert r.exit_code == 2 and "Error: --path zero9.yaml: no shipped file of that name (`ethsft presets` lists them)" in r.output
