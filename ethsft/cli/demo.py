"""`ethsft demo`: the whole path on a real chat model, on CPU (``ethsft.experiments.demo``)."""

from __future__ import annotations

import click


@click.command("demo")
@click.option("--output", default="runs/demo", show_default=True, help="Folder for data, adapter and reports.")
@click.option("--rows", type=click.IntRange(min=1), default=280, show_default=True,
              help="Synthetic transactions to generate.")
@click.option("--config", "config_path", default=None,
              help="Training config (default: the demo CPU preset, configs/demo_cpu.yaml).")
@click.option("--eval-samples", default=20, show_default=True, help="Test records scored before and after.")
@click.option("--seed", default=0, show_default=True)
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE", help="Override a config key.")
def main(output: str, rows: int, config_path: str | None, eval_samples: int, seed: int, sets: tuple[str, ...]):
    """Fetch a real chat model, then data -> train -> save -> reload -> generate -> accuracy (CPU)."""
    from ethsft.config.schema import ConfigError
    from ethsft.data.records import DataError
    from ethsft.experiments.demo import run_demo

    try:
        run_demo(output, rows, config_path, eval_samples, seed, sets)
    except (ConfigError, DataError) as e:
        raise click.ClickException(str(e)) from None

