"""Hub checks before a download (ethsft/model/hub.py): gated or missing models and too little disk, each said in
one line."""

from __future__ import annotations

import pytest

from conftest import tiny_settings
from ethsft.config.schema import ConfigError


class _Response:
    """The parts of an HTTP response huggingface_hub's errors read (its HTTP library differs across versions)."""

    def __init__(self, status: int, url: str):
        self.status_code, self.headers, self.request, self.url = status, {}, None, url


@pytest.mark.parametrize("status,kind,expected", [
    (403, "GatedRepoError", "model.base_model {m} is gated on the Hugging Face hub (HTTP 403): accept its terms at "
                            "https://huggingface.co/{m}, then run `huggingface-cli login` (or set HF_TOKEN) with a "
                            "token that has access"),
    (401, "RepositoryNotFoundError", "model.base_model {m}: the hub refused the request (HTTP 401, not logged in or "
                                     "token invalid): run `huggingface-cli login` (or set HF_TOKEN) with a token "
                                     "that has access"),
    (404, "RepositoryNotFoundError", "model.base_model {m}: no such model on the Hugging Face hub (HTTP 404); check "
                                     "the exact model id (e.g. mistralai/Mistral-7B-Instruct-v0.2), or if it is "
                                     "private, run `huggingface-cli login` (or set HF_TOKEN) with a token that has "
                                     "access"),
])
def test_gated_or_missing_hub_model_names_login_or_the_model_id(status, kind, expected, monkeypatch):
    import huggingface_hub.errors as hub_errors
    from transformers import AutoTokenizer

    from ethsft.config.schema import load_settings
    from ethsft.model.loading import load_tokenizer

    model_id = "mistralai/Mistral-7B-Instruct-v0.2"

    def refuses(*args, **kwargs):  # what transformers raises: an OSError caused by the hub error
        try:
            raise _http_error(getattr(hub_errors, kind), status, model_id)
        except Exception as cause:
            raise OSError(f"We couldn't connect to load {model_id}") from cause

    monkeypatch.setattr(AutoTokenizer, "from_pretrained", refuses)
    with pytest.raises(ConfigError) as e:
        load_tokenizer(load_settings(), model_id)
    assert str(e.value) == expected.format(m=model_id)


def test_too_little_disk_for_the_model_is_said_before_the_download(small_dataset, tmp_path, monkeypatch):
    from transformers import AutoTokenizer

    from ethsft.model import hub
    from ethsft.training.recipe import build_trainer

    monkeypatch.setattr(hub, "is_cached", lambda *a: False)
    monkeypatch.setattr(hub, "download_size", lambda *a: int(14.5 * 2**30))
    monkeypatch.setattr(hub, "free_bytes", lambda path: 3 * 2**30)
    monkeypatch.setattr(AutoTokenizer, "from_pretrained", lambda *a, **k: pytest.fail("download started"))
    s = tiny_settings(small_dataset, tmp_path / "out", "model.base_model=mistralai/Mistral-7B-Instruct-v0.2",
                      f"model.cache_dir={tmp_path / 'hf'}")
    with pytest.raises(ConfigError) as e:
        build_trainer(s)
    assert str(e.value) == (
        f"not enough disk for mistralai/Mistral-7B-Instruct-v0.2: the download needs 14.5 GiB (plus 10% margin), "
        f"{tmp_path / 'hf'} has 3.0 GiB free; free some space or set model.cache_dir to a bigger disk")


def _http_error(cls, status: int, model_id: str):
    return cls(f"{status} Client Error", response=_Response(status, f"https://huggingface.co/api/models/{model_id}"))
