"""Share a model on the Hugging Face Hub: a training run's adapter (``training.push_to_hub``, after the final save,
main process only), a merged model (``ethsft merge --push-to-hub``) or either one later (``ethsft push``).

What is pushed is listed here, file by file (``upload_folder`` with ``allow_patterns``): the adapter
(adapter_model.safetensors, adapter_config.json) or the merged weights and config, the tokenizer files, the chat
template, loss_curves.png and a generated model card (README.md, ``model_card.py``); never checkpoints, logs,
run_summary.json or training_args.bin. transformers' own ``push_to_hub`` is not used.

The token is huggingface_hub's business (HF_TOKEN, else ``hf auth login``'s stored token): ethsft never reads,
logs or writes it. A failed push raises :class:`HubPushError` whose message says why (401, 403, 404, network,
offline), where the local files are, and the command that pushes them later; nothing local is removed.
"""

from __future__ import annotations

import re
import shlex
import shutil
from dataclasses import dataclass
from pathlib import Path

from ethsft.config.schema import repo_id_problem
from ethsft.filenames import CARD_FILE, PLOT_FILE, SIDE_CARD_FILE
from ethsft.model.hub import error_chain, http_status, is_generated_card  # read hub errors as model downloads do

# light at import (the config schema checks repo ids with it); the card and redaction load when pushing
ADAPTER_FILES = ("adapter_model.safetensors", "adapter_config.json")
MERGED_FILES = ("config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
                   "added_tokens.json", "chat_template.jinja", "chat_template.json")
# a repo id: [namespace/]name, letters, digits, '-', '_', '.', at most 96 characters each, no '--' or '..'
LOGIN = "run `hf auth login` or set HF_TOKEN"


class HubPushError(RuntimeError):
    """A push to the Hub failed; the local files are untouched. ``exit_code`` for the CLI."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


@dataclass
class Pushed:
    repo_id: str
    url: str
    commit_url: str | None
    files: list[str]


def default_repo_id(folder: str | Path) -> str:
    """The output folder's name as a repo name (in the namespace of the token's user)."""
    name = re.sub(r"[^\w.-]+", "-", Path(folder).resolve().name).strip("-.") or "ethsft-model"
    return re.sub(r"-{2,}", "-", name.replace("..", "."))[:96]


def kind_of(folder: str | Path) -> str:
    folder = Path(folder)
    if (folder / "adapter_config.json").is_file():
        return "adapter"
    if (folder / "config.json").is_file():
        return "merged"
    raise HubPushError(f"ethsft: {folder} holds no adapter (adapter_config.json) and no model (config.json): pass a "
                       "training run's output folder or an `ethsft merge` output")


def files_to_push(folder: str | Path, kind: str) -> list[str]:
    """The names (in ``folder``) a push uploads, in order; fails when the model files themselves are missing."""
    folder = Path(folder)
    if kind == "adapter":
        missing = [n for n in ADAPTER_FILES if not (folder / n).is_file()]
        if missing:
            raise HubPushError(f"ethsft: {folder} has no {' and no '.join(missing)}: nothing to push (is the "
                               "adapter saved completely?)")
        model = list(ADAPTER_FILES)
    else:
        shards = sorted(p.name for p in folder.glob("model-*-of-*.safetensors"))
        model = [n for n in MERGED_FILES if (folder / n).is_file()] + shards
        if not any(n.endswith(".safetensors") for n in model):
            raise HubPushError(f"ethsft: {folder} has no model.safetensors: nothing to push")
    return model + [n for n in TOKENIZER_FILES + (PLOT_FILE, CARD_FILE, SIDE_CARD_FILE) if (folder / n).is_file()]


def card_path(folder: Path) -> Path:
    """Where the generated card is written: README.md, unless a README.md the user wrote is there (kept as it is,
    and the card goes beside it as ethsft_card.md)."""
    readme = folder / CARD_FILE
    return readme if not readme.exists() or is_generated_card(readme) else folder / SIDE_CARD_FILE


def check_token() -> None:
    """A push without a token fails on the Hub with a 401 after the upload starts: say so first."""
    from huggingface_hub import constants, get_token

    if not constants.is_offline_mode() and get_token() is None:
        raise HubPushError(f"ethsft: no Hugging Face token found: {LOGIN}")


def push_command(folder: str | Path, repo_id: str, private: bool | None = True) -> str:
    cmd = ["ethsft", "push", "--output", str(folder), "--hub-model-id", repo_id]
    if private is False:
        cmd.append("--hub-public-repo")
    return " ".join(shlex.quote(c) for c in cmd)


# --- why a push failed ---------------------------------------------------------------------------------------------

def _is_network_error(exc: BaseException) -> bool:
    names = {c.__name__ for c in type(exc).__mro__}  # httpx / httpx2 / requests, whichever huggingface_hub uses
    return bool(names & {"TransportError", "NetworkError", "ConnectError", "TimeoutException", "ConnectionError",
                         "ConnectTimeout", "ReadTimeout", "ProxyError"}) or isinstance(exc, (ConnectionError,
                                                                                                 TimeoutError))


def explain(exc: BaseException, repo_id: str, endpoint: str) -> str:
    """One line saying why a push of ``repo_id`` failed."""
    for e in error_chain(exc):
        if type(e).__name__ == "OfflineModeIsEnabled":
            return "HF_HUB_OFFLINE is set, so the Hub is not contacted: unset HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE)"
        status = http_status(e)
        if status == 401:
            return f"not logged in / token invalid (HTTP 401): {LOGIN}"
        if status == 403:
            return (f"no write access to {repo_id} (HTTP 403): use a token with write access to that user or "
                    f"organization ({LOGIN}), or push under your own name")
        if status == 404:
            return (f"repo/namespace not found (HTTP 404): {repo_id}; check the user or organization name before "
                    "the '/'")
        if status is not None:
            server = getattr(e, "server_message", None) or ""
            return f"the Hub answered HTTP {status}" + (f": {server.strip().splitlines()[0]}" if server.strip() else "")
        if _is_network_error(e):
            return (f"network unreachable: cannot connect to the Hub at {endpoint} ({type(e).__name__}); check the "
                    "connection (or HF_ENDPOINT)")
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


# --- pushing -------------------------------------------------------------------------------------------------------

def push_folder(folder: str | Path, repo_id: str, private: bool | None = True, kind: str | None = None,
                echo=print) -> Pushed:
    """Write the model card into ``folder`` and push the model's files to the Hub repo ``repo_id`` (created if
    missing, ``private`` as asked; an existing repo keeps its visibility). Raises HubPushError."""
    from ethsft.training.model_card import run_dir_of, write_card
    from ethsft.training.reporting import redact_text

    folder = Path(folder)
    kind = kind or kind_of(folder)
    what = "adapter" if kind == "adapter" else "merged model"
    later = push_command(folder, repo_id, private)

    def failure(reason: str) -> HubPushError:
        return HubPushError(redact_text(
            f"ethsft: could not push the {what} to the Hugging Face Hub: {reason}\n"
            f"The {what} is saved in {folder}/ (nothing there was removed); push it later with: {later}"))

    problem = repo_id_problem(repo_id)
    if problem:
        raise failure(problem)
    try:
        check_token()
    except HubPushError as e:
        raise failure(str(e).removeprefix("ethsft: ")) from None
    files = files_to_push(folder, kind)
    try:
        if kind == "merged" and not (folder / PLOT_FILE).is_file():  # the run's loss plot, for the card
            run_dir = run_dir_of(folder, kind)
            if run_dir is not None and (run_dir / PLOT_FILE).is_file():
                shutil.copy2(run_dir / PLOT_FILE, folder / PLOT_FILE)
        write_card(folder, repo_id, kind, card_path(folder))
    except OSError as e:
        raise failure(f"cannot write the model card into {folder}: {e}") from None
    files = files_to_push(folder, kind)

    from huggingface_hub import HfApi

    api = HfApi()
    echo(f"\nPushing the {what} to the Hugging Face Hub: {repo_id} "
         f"({'private' if private else 'public'} if created now; {len(files)} files)...")
    try:
        url = api.create_repo(repo_id, private=private, exist_ok=True, repo_type="model")
        full_id = getattr(url, "repo_id", None) or repo_id  # "name" alone lands in the token user's namespace
        info = api.upload_folder(repo_id=full_id, folder_path=str(folder), repo_type="model", allow_patterns=files,
                                 commit_message=f"Upload {what} with ethsft")
    except Exception as e:  # every failure leaves the folder as it is and says how to push it later
        raise failure(explain(e, repo_id, api.endpoint)) from None
    commit = getattr(info, "commit_url", None)
    echo(f"Pushed to {url}: {', '.join(files)}")
    return Pushed(full_id, str(url), commit, files)


def push_run(s, out: str | Path, echo=print, log_path: Path | None = None) -> Pushed:
    """``training.push_to_hub``: push the run's output folder; a failure is appended to ``log_path`` and raised."""
    from ethsft.training.reporting import redact_text

    repo_id = s.training.hub_model_id or default_repo_id(out)
    try:
        return push_folder(out, repo_id, s.training.hub_private_repo, "adapter", echo)
    except HubPushError as e:
        if log_path is not None:
            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write(redact_text(str(e)) + "\n")
        raise


def preflight(s, out: str | Path) -> list[str]:
    """Notes for the start of a run with ``training.push_to_hub``: where it will push, and a push that cannot work
    (offline, no token) said before training instead of after it. Nothing is sent anywhere."""
    repo_id = s.training.hub_model_id or default_repo_id(out)
    where = repo_id if "/" in repo_id else f"{repo_id} under the token's user"
    notes = [f"At the end, the adapter is pushed to the Hugging Face Hub as {where} "
             f"(a {'private' if s.training.hub_private_repo else 'public'} repo if it is created then)"]
    try:
        from huggingface_hub import constants, get_token

        if constants.is_offline_mode():
            notes.append("Note: HF_HUB_OFFLINE is set: the push at the end will fail unless it is unset; the run "
                         f"stays in {out}/ either way")
        elif get_token() is None:
            notes.append(f"Note: no Hugging Face token found (HF_TOKEN or `hf auth login`): log in before training "
                         f"ends, or the push fails (the run stays in {out}/)")
    except Exception:  # a check, never a reason to stop
        pass
    return notes
