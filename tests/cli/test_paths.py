"""Outputs checked before the work: one line for an empty path, a path under a file, an unwritable folder."""

import os

import click
import pytest

from ethsft.cli.paths import check_output


def unwritable(tmp_path) -> str:
    """A folder this process cannot write into: /sys for root (who ignores permission bits), else a 0555 folder."""
    if os.geteuid() == 0:
        return "/sys"
    folder = tmp_path / "read-only"
    folder.mkdir(mode=0o555)
    return str(folder)


def test_bad_outputs_are_one_line_and_write_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("x")
    ro = unwritable(tmp_path)
    cases = {"": "--output is empty: name the file to write",
             "a-file/out.jsonl": "--output a-file/out.jsonl: cannot write there (a-file is a file)",
             str(tmp_path): f"--output {tmp_path} is a folder; name a file",
             f"{ro}/sub/out.jsonl": f"--output {ro}/sub/out.jsonl: cannot write there (Permission denied)"}
    for path, message in cases.items():
        with pytest.raises(click.ClickException) as e:
            check_output(path)
        assert e.value.message == message
    with pytest.raises(click.ClickException) as e:
        check_output("a-file", folder=True)
    assert e.value.message == "--output a-file is a file; name a folder"
    assert sorted(os.listdir(tmp_path)) == ["a-file"] + (["read-only"] if ro != "/sys" else [])


def test_a_writable_output_passes_and_leaves_no_probe(tmp_path):
    check_output(tmp_path / "new" / "out.jsonl")
    check_output(tmp_path / "eval", folder=True)
    assert os.listdir(tmp_path) == []
