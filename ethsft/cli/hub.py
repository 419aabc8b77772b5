"""`ethsft push`: push a finished run's adapter, or an `ethsft merge` output, to the Hugging Face Hub (what
``training.push_to_hub`` and ``ethsft merge --push-to-hub`` do, for a folder that was not pushed or whose push failed).
The options shared with `ethsft merge --push-to-hub` live here too."""

from __future__ import annotations

from pathlib import Path

import click

private_option = click.option("--hub-private-repo/--hub-public-repo", "hub_private_repo", default=None,
                              help="Create the Hub repo private (the default) or public; a repo that exists keeps "
                                   "its visibility.")


def push_or_exit(folder, repo_id: str, private: bool | None, kind: str | None = None) -> None:
    """Push ``folder``; on failure print why, where the files are and the command to retry, and exit 1."""
    from ethsft.training.hub_push import HubPushError, push_folder
    from ethsft.training.reporting import redact_text

    try:
        push_folder(folder, repo_id, True if private is None else private, kind,
                    echo=lambda line: click.echo(redact_text(line)))
    except HubPushError as e:
        click.echo(str(e), err=True)
        raise SystemExit(e.exit_code) from None


@click.command("push")
@click.option("--output", "folder", required=True, type=click.Path(file_okay=False, exists=True),
              help="A training run's output folder (adapter) or an `ethsft merge` output (merged model).")
@click.option("--hub-model-id", default=None, metavar="[USER/]NAME",
              help="The Hub repo [default: the run's training.hub_model_id, else the folder's name under the "
                   "token's user].")
@private_option
def push(folder, hub_model_id, hub_private_repo):
    """Push an adapter (or a merged model) to the Hugging Face Hub with a generated model card: the weights,
    tokenizer, chat template, loss plot and README.md only. Token: HF_TOKEN or `hf auth login`."""
    from ethsft.inference.loading import training_settings
    from ethsft.config.schema import repo_id_problem
    from ethsft.training.hub_push import HubPushError, default_repo_id, kind_of
    from ethsft.training.model_card import run_dir_of

    try:
        kind = kind_of(folder)
    except HubPushError as e:
        raise click.UsageError(str(e).removeprefix("ethsft: ")) from None
    run_dir = run_dir_of(Path(folder), kind)
    settings = training_settings(run_dir) if run_dir is not None else None
    repo_id = hub_model_id or (settings.training.hub_model_id if settings else None) or default_repo_id(folder)
    problem = repo_id_problem(repo_id)
    if problem:
        raise click.UsageError(f"--hub-model-id: {problem}")
    private = hub_private_repo if hub_private_repo is not None else (
        settings.training.hub_private_repo if settings else True)
    push_or_exit(folder, repo_id, private, kind)
