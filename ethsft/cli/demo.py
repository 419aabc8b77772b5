"""`ethsft demo`: the whole path on a real chat model, on CPU (``ethsft.experiments.demo``)."""

from __future__ import annotations

import click


@click.command("demo")
@click.option("--output", default="runs/demo", show_default=True, help="Folder for data, adapter and reports.")
@click.option("--rows", type=click.IntRange(min=1), default=None,
              help="Synthetic transactions to generate [default: 280 on CPU, 25000 with a CUDA GPU].")
@click.option("--config", "config_path", default=None,
              help="Training config [default: configs/demo_cpu.yaml on CPU, configs/smollm2_gpu_fast.yaml with a "
                   "CUDA GPU].")
@click.option("--eval-samples", type=click.IntRange(min=1), default=None,
              help="Test records scored before and after [default: 20 on CPU, 500 with a CUDA GPU].")
@click.option("--seed", default=0, show_default=True)
@click.option("--set", "sets", multiple=True, metavar="SECTION.KEY=VALUE", help="Override a config key.")
def main(output: str, rows: int | None, config_path: str | None, eval_samples: int | None, seed: int,
         sets: tuple[str, ...]):
    """Fetch a real chat model, then data -> train -> save -> reload -> generate -> accuracy (CPU, or the GPU
    recipe on a CUDA GPU)."""
    from ethsft.config.schema import ConfigError
    from ethsft.data.records import DataError
    from ethsft.experiments.demo import run_demo

    try:
        run_demo(output, rows, config_path, eval_samples, seed, sets)
    except (ConfigError, DataError) as e:
        raise click.ClickException(str(e)) from None

