"""Hub checks before anything large happens: gated/missing models (401/403/404) explained, and enough disk for
the model download said before it starts."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from ethsft.units import GiB
from ethsft.config.schema import ConfigError

DISK_MARGIN = 1.10  # the download plus 10% (temporary .incomplete files, tokenizer, configs)


class HubError(ConfigError):
    """The model cannot be fetched from the hub as named."""


def error_chain(exc: BaseException):
    """``exc`` and the exceptions it was raised from, each once."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def http_status(exc: BaseException) -> int | None:
    """The HTTP status of a hub error's response, if it has one."""
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def explain_hub_error(exc: BaseException, model_id: str) -> HubError | None:
    """A clear HubError for a hub failure loading ``model_id`` (gated, unauthorized, missing), else None."""
    try:
        from huggingface_hub.errors import GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError
    except ImportError:  # pragma: no cover
        GatedRepoError = RepositoryNotFoundError = LocalEntryNotFoundError = ()  # type: ignore
    login = "run `huggingface-cli login` (or set HF_TOKEN) with a token that has access"
    page = f"https://huggingface.co/{model_id}"
    for e in error_chain(exc):
        text = str(e)
        status = http_status(e)
        if isinstance(e, GatedRepoError) or "gated repo" in text.lower():
            return HubError(f"model.base_model {model_id} is gated on the Hugging Face hub (HTTP "
                            f"{status or 403}): accept its terms at {page}, then {login}")
        if status == 401:
            return HubError(f"model.base_model {model_id}: the hub refused the request (HTTP 401, not logged in or "
                            f"token invalid): {login}")
        if status == 403:
            return HubError(f"model.base_model {model_id}: access denied by the hub (HTTP 403): request access at "
                            f"{page}, then {login}")
        if isinstance(e, RepositoryNotFoundError) or status == 404 or "is not a valid model identifier" in text:
            return HubError(f"model.base_model {model_id}: no such model on the Hugging Face hub (HTTP "
                            f"{status or 404}); check the exact model id (e.g. mistralai/Mistral-7B-Instruct-v0.2), "
                            f"or if it is private, {login}")
        if isinstance(e, LocalEntryNotFoundError) or "offline mode" in text.lower():
            return HubError(f"model.base_model {model_id} is not in the local cache and the hub cannot be reached "
                            "(offline, HF_HUB_OFFLINE=1, or no network); download it first or point "
                            "model.base_model at a local folder")
    return None


def cache_dir_for(cache_dir: str | None) -> Path:
    if cache_dir:
        return Path(cache_dir).expanduser()
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def is_cached(model_id: str, cache_dir: str | None, revision: str | None = None) -> bool:
    """True when ``model_id``'s config is already in the hub cache (then nothing large will be downloaded)."""
    try:
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(model_id, "config.json", cache_dir=cache_dir, revision=revision)
    except Exception:
        return False
    return isinstance(found, str)


def download_size(model_id: str, revision: str | None = None) -> int | None:
    """Bytes of the safetensors weights ``from_pretrained`` will fetch, or None when the hub cannot say."""
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        return None
    try:
        from huggingface_hub import HfApi

        info = HfApi().model_info(model_id, revision=revision, files_metadata=True)
    except Exception as e:  # gated / missing: explained here, before the download
        err = explain_hub_error(e, model_id)
        if err is not None:
            raise err from None
        return None
    sizes = [f.size or 0 for f in (info.siblings or []) if f.rfilename.endswith(".safetensors")]
    return sum(sizes) or None


def free_bytes(path: Path) -> int:
    probe = path
    while not probe.exists() and probe.parent != probe:
        probe = probe.parent
    return shutil.disk_usage(probe).free


def check_download(model_id: str, cache_dir: str | None, revision: str | None = None) -> None:
    """Before the download starts: refuse when the cache's disk cannot hold the model (plus a margin)."""
    if is_cached(model_id, cache_dir, revision):
        return
    size = download_size(model_id, revision)
    if not size:
        return
    target = cache_dir_for(cache_dir)
    free = free_bytes(target)
    if free < size * DISK_MARGIN:
        raise HubError(f"not enough disk for {model_id}: the download needs {size / GiB:.1f} GiB (plus 10% margin), "
                       f"{target} has {free / GiB:.1f} GiB free; free some space or set model.cache_dir to a "
                       "bigger disk")


def is_generated_card(path: Path) -> bool:
    """A model card that a tool wrote: ethsft's (tag ``ethsft``), TRL's (``trl``) or transformers'
    (``generated_from_trainer``). Anything else named README.md is the user's."""
    from huggingface_hub import metadata_load

    try:
        tags = (metadata_load(path) or {}).get("tags") or []
    except Exception:  # not a front matter a card has: someone's own text
        return False
    return isinstance(tags, list) and bool({"ethsft", "trl", "generated_from_trainer"} & set(map(str, tags)))
