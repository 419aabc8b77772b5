"""The README's "Formatters for your own TRL project" script (docs/snippets/trl_formatters.py) runs as written, with
each formatter, and trains exactly render()'s labels (the script asserts it)."""

from __future__ import annotations

import runpy
import sys

import pytest

from conftest import REPO

SNIPPET = REPO / "docs" / "snippets" / "trl_formatters.py"


@pytest.mark.parametrize("form", ["prompt_completion", "ids", "messages"])
def test_the_readme_script_runs_as_written(form, tmp_path, monkeypatch, capsys, tiny_model_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", [str(SNIPPET), form])
    scope = runpy.run_path(str(SNIPPET), run_name="__main__")
    trainer = scope["trainer"]
    assert trainer.state.global_step == 2 and (tmp_path / "runs" / "my-sft").is_dir()
    first = trainer.train_dataset[0]
    assert first["labels"] == scope["render"](scope["records"][0], scope["tokenizer"]).labels
    eos_rows = [line for line in capsys.readouterr().out.splitlines() if line.endswith("'</s>'")]
    assert len(eos_rows) == 1 and "  x " in eos_rows[0]  # the pretty table: the EOS row is trained


@pytest.mark.parametrize("page", ["README.md", "docs/formatters.md"])
def test_the_pages_show_the_script_that_runs(page):
    text = (REPO / page).read_text(encoding="utf-8")
    shown = text.split("```python\n", 1)[1].split("```", 1)[0]
    assert shown == SNIPPET.read_text(encoding="utf-8"), f"{page} shows another script than {SNIPPET.name}"
