"""`ethsft synth`: an output it cannot write is said before a row is generated."""

from click.testing import CliRunner
from cli.test_paths import unwritable

from ethsft.cli.data import synth


def test_synth_to_an_unwritable_output_is_one_line(tmp_path):
    ro = unwritable(tmp_path)
    result = CliRunner().invoke(synth, ["--rows", "5", "--output", f"{ro}/decoded.csv"])
    assert result.exit_code == 1
    assert result.output == f"Error: --output {ro}/decoded.csv: cannot write there (Permission denied)\n"


def test_synth_to_an_empty_output_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(synth, ["--rows", "5", "--output", ""])
    assert result.output == "Error: --output is empty: name the file to write\n" and list(tmp_path.iterdir()) == []
