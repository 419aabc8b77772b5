"""push and the user's files: a hand-written README.md survives byte for byte; no token is said before uploading."""

import hashlib
import json

import pytest
from click.testing import CliRunner

from ethsft.cli.hub import push

README = "# My adapter\n\nNotes I wrote by hand.\n"


def sha(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def run_dir(tmp_path):
    """An adapter folder as a run leaves it (the weights' bytes do not matter to a push that fails)."""
    out = tmp_path / "eth-run"
    out.mkdir()
    (out / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "embedded:tiny-mistral",
                                                         "peft_type": "LORA", "r": 8, "lora_alpha": 16}))
    (out / "adapter_model.safetensors").write_bytes(b"weights")
    (out / "README.md").write_text(README)
    return out


def test_a_failed_push_keeps_the_users_readme(run_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = sha(run_dir / "README.md")
    result = CliRunner().invoke(push, ["--output", str(run_dir), "--hub-model-id", "me/eth"])
    assert result.exit_code == 1
    assert ("ethsft: could not push the adapter to the Hugging Face Hub: HF_HUB_OFFLINE is set, "
            "so the Hub is not contacted: "
            "unset HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE)") in result.output.splitlines()
    assert sha(run_dir / "README.md") == before
    card = (run_dir / "ethsft_card.md").read_text()  # the generated card, beside the user's README
    assert card.startswith("---\nlibrary_name: peft\n") and "\n- ethsft\n" in card


def test_a_generated_readme_is_regenerated(run_dir, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    (run_dir / "README.md").write_text("---\ntags:\n- trl\n- generated_from_trainer\n---\n# Model Card\n")
    CliRunner().invoke(push, ["--output", str(run_dir), "--hub-model-id", "me/eth"])
    assert "\n- ethsft\n" in (run_dir / "README.md").read_text() and not (run_dir / "ethsft_card.md").exists()


def test_push_without_a_token_says_so(run_dir, monkeypatch, tmp_path):
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"))
    result = CliRunner().invoke(push, ["--output", str(run_dir), "--hub-model-id", "me/eth"])
    assert result.exit_code == 1
    assert result.output.splitlines()[0] == ("ethsft: could not push the adapter to the Hugging Face Hub: no Hugging "
                                             "Face token found: run `hf auth login` or set HF_TOKEN")
    assert "Pushing" not in result.output
    assert sha(run_dir / "README.md") == hashlib.sha256(README.encode()).hexdigest()
