"""model_shape on a local config.json that cannot describe a model: one line naming the file and key."""

import json

import pytest
from click.testing import CliRunner

from ethsft.cli.ops import doctor, estimate
from ethsft.config.schema import ConfigError, load_settings
from ethsft.planning.shapes import model_shape

CONFIG = {"hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 2, "num_attention_heads": 4,
          "num_key_value_heads": 2, "vocab_size": 32000}


def model_dir(tmp_path, text: str):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text(text)
    return folder


@pytest.mark.parametrize("text, problem", [
    (json.dumps({**CONFIG, "num_attention_heads": 0}), "num_attention_heads is 0; expected a whole number of at least 1"),
    (json.dumps({**CONFIG, "num_hidden_layers": "2"}), "num_hidden_layers is '2'; expected a whole number of at least 1"),
    ("not json{", "not a readable JSON file (Expecting value: line 1 column 1 (char 0))"),
    ("[1, 2]", "expected a JSON object (a model's config.json), got list"),
])
def test_a_bad_config_json_is_one_line(tmp_path, text, problem):
    folder = model_dir(tmp_path, text)
    with pytest.raises(ConfigError) as e:
        model_shape(load_settings(None, {"model.base_model": str(folder)}))
    assert str(e.value) == f"{folder / 'config.json'}: {problem}"
    result = CliRunner().invoke(estimate, ["--set", f"model.base_model={folder}"])
    assert (result.exit_code, result.output) == (1, f"Error: {folder / 'config.json'}: {problem}\n")
    result = CliRunner().invoke(doctor, ["--set", f"model.base_model={folder}"])
    assert result.exit_code == 1 and f"✗ Config: defaults: {folder / 'config.json'}: {problem}" in result.output


def test_a_good_config_json_gives_its_shape(tmp_path):
    shape = model_shape(load_settings(None, {"model.base_model": str(model_dir(tmp_path, json.dumps(CONFIG)))}))
    assert (shape.layers, shape.heads, shape.kv_heads) == (2, 4, 2)
