"""`ethsft train`: the one training command, for every launcher:

    ethsft train --config configs/training_config.yaml --dataset data/datasets/ --output models/run1
    python -m ethsft.train --config ...                                  # same flags
    accelerate launch --config_file "$(ethsft presets --path zero2.yaml)" -m ethsft.train --config ...
    deepspeed --num_gpus 2 --module ethsft.train --deepspeed zero2 --config ...
"""

from __future__ import annotations

import click

from ethsft.config.presets import resolve_deepspeed_path
from ethsft.config.schema import ConfigError, Settings, load_settings
from ethsft.data.records import DataError
from ethsft.training.hub_push import HubPushError

# Guide flag -> schema key. Everything else goes through --set section.key=value.
FLAG_KEYS = {
    "dataset": "data.dataset_dir",
    "dataset_config": "data.dataset_config",
    "output": "training.output_dir",
    "base_model": "model.base_model",
    "num_epochs": "training.num_train_epochs",
    "learning_rate": "training.learning_rate",
    "batch_size": "training.per_device_train_batch_size",
    "gradient_accumulation": "training.gradient_accumulation_steps",
    "push_to_hub": "training.push_to_hub",
    "hub_model_id": "training.hub_model_id",
    "hub_private_repo": "training.hub_private_repo",
}


def _print_config_help(ctx, _param, value):
    if not value or ctx.resilient_parsing:
        return
    from ethsft.config.schema import help_text

    click.echo(help_text())
    ctx.exit()


def train_options(f):
    """The guide's flags, shared by `ethsft train` and `python -m ethsft.train`."""
    options = [
        click.option("--config", "config_path", default=None,
                     help="YAML config (the guide's sections model, lora, ..., or a flat TRL recipe): a path, or a "
                          "shipped preset's name (tiny_cpu, 12gb, ...: `ethsft presets`)."),
        click.option("--dataset", default=None,
                     help="Folder with train.jsonl, validation.jsonl[, test.jsonl]; a save_to_disk folder; or a Hub "
                          "dataset id (split names: --set data.validation_split=dev).",),
        click.option("--dataset-config", default=None, help="The Hub dataset's configuration name."),
        click.option("--output", default=None, help="Output folder for checkpoints, adapter, logs."),
        click.option("--base-model", default=None, help="Hub id or local path of the base model."),
        click.option("--num-epochs", type=click.FloatRange(min=0, min_open=True), default=None),
        click.option("--learning-rate", type=click.FloatRange(min=0, min_open=True), default=None),
        click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Micro batch per device."),
        click.option("--gradient-accumulation", type=click.IntRange(min=1), default=None),
        click.option("--resume-from-checkpoint", default=None,
                     help="A checkpoint folder, or 'latest' for the newest complete one in --output."),
        click.option("--set", "sets", multiple=True, metavar="[SECTION.]KEY=VALUE",
                     help="Override any config key, e.g. --set lora.r=32, or any SFTConfig field, e.g. --set "
                          "training.neftune_noise_alpha=5 (repeatable). Every key: --help-config."),
        click.option("--help-config", is_flag=True, expose_value=False, is_eager=True, callback=_print_config_help,
                     help="List every config key with its help (ethsft's, SFTConfig's, LoraConfig's, "
                          "BitsAndBytesConfig's) and exit."),
        click.option("--overwrite", is_flag=True, help="Train into an output folder that holds a finished run."),
        click.option("--push-to-hub/--no-push-to-hub", "push_to_hub", default=None,
                     help="After a successful run, push the adapter, tokenizer, loss plot and a model card to the "
                          "Hugging Face Hub (token: HF_TOKEN or `hf auth login`)."),
        click.option("--hub-model-id", default=None, metavar="[USER/]NAME",
                     help="The Hub repo to push to [default: the output folder's name under the token's user]."),
        click.option("--hub-private-repo/--hub-public-repo", "hub_private_repo", default=None,
                     help="Create the Hub repo private (the default) or public."),
        click.option("--dry-run", is_flag=True,
                     help="Print the resolved settings, SFTConfig, LoraConfig and BitsAndBytesConfig; load nothing."),
        click.option("--deepspeed", "deepspeed_config", default=None,
                     help="A DeepSpeed JSON: a path or a shipped one's name (zero2, zero3, zero2_offload; "
                          "`ethsft presets`), as the `deepspeed` launcher passes it; with --num-processes also ddp."),
        click.option("--num-processes", type=click.IntRange(min=1), default=None,
                     help="Hand over to `accelerate launch` with this many processes (GPUs)."),
        click.option("--local_rank", "--local-rank", "local_rank", type=int, default=None, hidden=True),
    ]
    for option in reversed(options):
        f = option(f)
    return f


def settings_from_cli(config_path, sets, overwrite=False, **flags) -> Settings:
    """The settings the flags give, checked as far as ethsft's schema goes (``config.hf.check`` does the rest)."""
    overrides = {FLAG_KEYS[k]: v for k, v in flags.items() if k in FLAG_KEYS and v is not None}
    if overwrite:
        overrides["training.overwrite"] = True
    return load_settings(config_path, overrides, sets)  # a file, or a shipped preset's name


def _check_deepspeed_json(path: str) -> None:
    """A DeepSpeed config must be a JSON object: said now, not after the model has loaded."""
    import json

    try:
        data = json.loads(open(path, encoding="utf-8").read())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"--deepspeed {path}: not a readable DeepSpeed JSON ({e})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"--deepspeed {path}: expected a JSON object of DeepSpeed settings, got {type(data).__name__}")


@click.command("train")
@train_options
def main(config_path, resume_from_checkpoint, sets, overwrite, dry_run, deepspeed_config, num_processes, local_rank,
         **flags):
    """Fine-tune a QLoRA adapter (one GPU, or under accelerate/deepspeed)."""
    from ethsft.cli.paths import check_output
    from ethsft.training.launcher import (accelerate_command, inside_launcher, strip_launch_flags,
                                          use_shipped_deepspeed_config)
    from ethsft.training.run_folder import refuse_busy

    use_shipped_deepspeed_config()

    if num_processes and not inside_launcher():
        import os
        import sys

        from ethsft.config.hf import check

        try:
            check(settings_from_cli(config_path, sets, overwrite, **flags))  # a bad config fails before spawning
            given = sys.argv[2:] if sys.argv[1:2] == ["train"] else sys.argv[1:]  # `ethsft train` or `-m ethsft.train`
            cmd = accelerate_command(num_processes, deepspeed_config, strip_launch_flags(given))
        except (ConfigError, ValueError, FileNotFoundError) as e:
            raise click.UsageError(str(e)) from None
        click.echo(f"ethsft: {'would hand' if dry_run else 'handing'} over to: " + " ".join(cmd), err=True)
        if not dry_run:
            os.execvp(cmd[0], cmd)

    try:
        settings = settings_from_cli(config_path, sets, overwrite, **flags)
        if deepspeed_config:
            deepspeed_config = str(resolve_deepspeed_path(deepspeed_config))
            _check_deepspeed_json(deepspeed_config)
    except ConfigError as e:
        raise click.UsageError(str(e)) from None
    check_output(settings.training.output_dir, folder=True)  # '', under a file, unwritable: said before anything
    if not dry_run:
        try:  # before torch loads: a second run into a busy folder stops at once
            refuse_busy(settings.training.output_dir)
        except ConfigError as e:
            raise click.ClickException(str(e)) from None
    from ethsft.config.hf import check, describe  # torch, TRL, peft: after the lock check

    try:
        check(settings)  # what TRL, peft and transformers would refuse
    except ConfigError as e:
        raise click.UsageError(str(e)) from None
    if dry_run:
        import yaml

        from ethsft.model.loading import check_target_modules, model_source
        from ethsft.training.reporting import redact_text, run_environment

        try:
            check_target_modules(settings, model_source(settings))
        except ConfigError as e:
            raise click.UsageError(str(e)) from None
        env = run_environment()
        text = describe(settings) + ("\n\n# Environment (secrets redacted)\n" + yaml.safe_dump(env).rstrip() if env else "")
        click.echo(redact_text(text))
        return
    from ethsft.training.guards import TrainingStopped  # torch and transformers: not for `ethsft --help`
    from ethsft.training.recipe import run

    try:
        run(settings, resume_from_checkpoint, deepspeed_config)
    except (ConfigError, DataError) as e:
        raise click.ClickException(str(e)) from None
    except TrainingStopped as e:
        click.echo(str(e), err=True)
        raise SystemExit(e.exit_code) from None
    except HubPushError as e:  # the run finished and is saved; only the push failed
        click.echo(str(e), err=True)
        raise SystemExit(e.exit_code) from None


if __name__ == "__main__":
    main()
