"""`ethsft demo`: too few rows is one line, not a traceback."""

from click.testing import CliRunner

from ethsft.cli.demo import main as demo


def test_zero_rows_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(demo, ["--rows", "0", "--output", str(tmp_path / "demo")])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == "Error: Invalid value for '--rows': 0 is not in the range x>=1."
    assert not (tmp_path / "demo").exists()


def test_too_few_rows_for_a_split_is_one_line(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(demo, ["--rows", "1", "--output", str(out), "--config", "configs/tiny_cpu.yaml"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.output.splitlines()[-1] == (f"Error: {out}/datasets/test.jsonl: empty split file; expected JSONL "
                                              "records with the keys of instruction/input/output, "
                                              "prompt/completion, messages or text")
