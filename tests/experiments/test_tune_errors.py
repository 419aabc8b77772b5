"""tune's exits: no trials is a usage error; a trial failing on the config stops the search in one line."""

from click.testing import CliRunner

from ethsft.cli.ops import tune


def test_zero_trials_is_an_error(small_dataset, tmp_path):
    result = CliRunner().invoke(tune, ["--config", "configs/tiny_cpu.yaml", "--dataset", str(small_dataset),
                                       "--output", str(tmp_path / "study"), "--num-trials", "0"])
    assert result.exit_code == 2
    assert result.output.splitlines()[-1] == ("Error: Invalid value for '--num-trials': 0 is not in the range x>=1.")
    assert not (tmp_path / "study").exists()


def test_a_trial_with_bad_target_modules_is_one_line(small_dataset, tmp_path):
    result = CliRunner().invoke(tune, ["--config", "configs/tiny_cpu.yaml", "--dataset", str(small_dataset),
                                       "--output", str(tmp_path / "study"), "--num-trials", "2",
                                       "--set", "lora.target_modules=[nope_proj]", "--set", "training.max_steps=1"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    assert result.output.splitlines()[-1] == (
        "Error: lora.target_modules: nope_proj matches no module of embedded:tiny-mistral (its linear layers: "
        "down_proj, gate_proj, k_proj, lm_head, o_proj, q_proj, up_proj, v_proj)")
