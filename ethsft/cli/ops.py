"""Click commands ``doctor``, ``estimate`` and ``tune``; ``ethsft.cli`` adds them to the main group."""

from __future__ import annotations

import json

import click

from ethsft.config.schema import ConfigError, load_settings

_config = click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
                       help="YAML config (as `ethsft train --config`).")
_sets = click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE",
                     help="Override any config key, e.g. --set data.max_length=1024 (repeatable).")


def _settings(config_path, sets, overrides=None):
    try:
        return load_settings(config_path, overrides, sets)
    except ConfigError as e:
        raise click.UsageError(str(e)) from None


@click.command("doctor")
@_config
@_sets
@click.option("--card", type=float, default=None,
              help="Judge the config as on a card of this many GB: PyTorch capped at it minus 0.5 GiB of CUDA "
                   "context (e.g. --card 12 on an 80 GB GPU: 11.5 GiB).")
def doctor(config_path, sets, card):
    """Check Python, torch, CUDA, GPU, bitsandbytes 4-bit, kernels, DeepSpeed, disk, HF token, trackers;
    with --config, whether that run fits this GPU. Exit code 1 when something required is broken."""
    from ethsft.planning.doctor import exit_code, render, run_checks

    settings = _settings(config_path, sets) if (config_path or sets) else None
    checks = run_checks(settings, config_path or "defaults", card)
    click.echo(render(checks))
    raise SystemExit(exit_code(checks))


@click.command("estimate")
@_config
@click.option("--dataset", default=None, help="Folder with train.jsonl[, validation.jsonl] (default data.dataset_dir "
              "when it exists); without one, every micro-batch is assumed batch x max_length.")
@click.option("--gpu", default="auto", show_default=True,
              help="auto (the visible GPU), or a named one: rtx3060, rtx3090, rtx4090, t4, l4, a10g, a100-40gb, "
                   "a100, h100-pcie, h100, h200.")
@_sets
@click.option("--json", "as_json", is_flag=True, help="Print the estimate as JSON.")
def estimate(config_path, dataset, gpu, sets, as_json):
    """Token counts (the model's tokenizer), steps, predicted peak VRAM and wall time of a training run."""
    from pathlib import Path

    from ethsft.data.records import DataError
    from ethsft.planning.estimate import estimate_run
    from ethsft.planning.hardware import detect_gpu, named_gpu
    from ethsft.planning.report import report, to_json
    from ethsft.planning.shapes import model_shape
    from ethsft.planning.stats import dataset_stats

    s = _settings(config_path, sets, {"data.dataset_dir": dataset} if dataset else None)
    try:
        shape = model_shape(s)
        if gpu == "auto":
            card, detected = detect_gpu(), True
        else:
            card, detected = named_gpu(gpu), False
        use_data = dataset is not None or Path(s.data.dataset_dir).is_dir()
        stats = dataset_stats(s, s.data.dataset_dir) if use_data else None
        est = estimate_run(s, card, stats, shape, detected=detected and card is not None)
    except (ConfigError, DataError) as e:
        raise click.ClickException(str(e)) from None
    if as_json:
        click.echo(json.dumps(to_json(s, est), indent=2))
        return
    if gpu == "auto" and card is None:
        click.echo("No CUDA GPU here: memory only; name one with --gpu (rtx3060, rtx4090, a100, h100, ...) "
                   "for the fit and time.\n")
    click.echo(report(s, est))


@click.command("tune")
@_config
@click.option("--dataset", default=None, help="Folder with train.jsonl and validation.jsonl.")
@click.option("--output", default=None, help="Study folder: trials, study.db, results, best_config.yaml "
              "[default: <training.output_dir>-tune].")
@click.option("--num-trials", type=click.IntRange(min=1), default=20, show_default=True,
              help="Trials in all; a resumed search runs only the missing ones.")
@click.option("--objective", type=click.Choice(["eval_loss", "intent_accuracy"]), default="eval_loss",
              show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--timeout", type=float, default=None, help="Stop starting trials after this many seconds.")
@_sets
def tune(config_path, dataset, output, num_trials, objective, seed, timeout, sets):
    """Optuna search over learning rate, LoRA rank, batch and dropout, with pruning; resumable."""
    from ethsft.data.records import DataError
    from ethsft.experiments.tune import tune as run_tune

    s = _settings(config_path, sets, {"data.dataset_dir": dataset} if dataset else None)
    out = output or f"{s.training.output_dir.rstrip('/')}-tune"
    try:
        result = run_tune(s, out, num_trials=num_trials, objective=objective, seed=seed, timeout=timeout)
    except (ConfigError, DataError) as e:
        raise click.ClickException(str(e)) from None
    click.echo("\n" + result.table)
