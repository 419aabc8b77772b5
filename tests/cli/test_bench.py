"""`ethsft bench`: an unknown model shape is one line; the exit code is 1 when a mode fails."""

from click.testing import CliRunner

from ethsft.cli.bench import main as bench


def test_unknown_model_shape_is_one_line():
    result = CliRunner().invoke(bench, ["--model-shape", "nonsense"])
    assert (result.exit_code, result.output) == (
        1, "Error: --model-shape 'nonsense': choose one of tiny-mistral, small-mistral, mistral-7b\n")


def test_a_failed_mode_fails_the_command(tmp_path):
    result = CliRunner().invoke(bench, ["--model-shape", "tiny-mistral", "--modes", "a", "--steps", "0", "--warmup",
                                        "0", "--samples", "40", "--no-isolate", "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 1
    assert result.output.splitlines()[-1] == "ethsft bench: 1 of 1 modes failed (a)"
