"""Loading the tokenizer and the 4-bit base model (ethsft/model/loading.py)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ethsft.config.schema import ConfigError, load_settings


def _no_template_tokenizer(tiny_model_path: str, target: Path) -> Path:
    target.mkdir()
    shutil.copy(Path(tiny_model_path) / "tokenizer.json", target)
    config = json.loads((Path(tiny_model_path) / "tokenizer_config.json").read_text())
    config.pop("chat_template", None)
    (target / "tokenizer_config.json").write_text(json.dumps(config))
    return target


def test_tokenizer_without_chat_template(tiny_model_path, tmp_path, capsys):
    from ethsft.model.loading import load_tokenizer

    source = str(_no_template_tokenizer(tiny_model_path, tmp_path / "tok"))
    with pytest.raises(ConfigError) as e:  # none: the tokenizer's own template or nothing
        load_tokenizer(load_settings(None, None, ["model.chat_template=none"]), source)
    assert str(e.value) == (f"the tokenizer of {source} has no chat template and model.chat_template is 'none': set "
                            "model.chat_template to 'mistral' (ethsft's packaged Mistral-Instruct template), 'auto', "
                            "or the path of a .jinja template file")

    capsys.readouterr()
    tok = load_tokenizer(load_settings(), source)  # auto: the packaged template, with a notice
    assert capsys.readouterr().err == (f"ethsft: {source} has no chat template: using ethsft's packaged "
                                       "Mistral-Instruct template\n")
    assert "[INST]" in tok.apply_chat_template([{"role": "user", "content": "hi"}], tokenize=False)

    with pytest.raises(ConfigError) as e:
        load_tokenizer(load_settings(None, None, ["model.chat_template=templates/missing.jinja"]), source)
    assert str(e.value) == "model.chat_template: file not found: templates/missing.jinja"
