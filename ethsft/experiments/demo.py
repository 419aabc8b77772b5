"""`ethsft demo`: the whole path on a real pretrained model.

fetch SmolLM2-135M-Instruct -> synth transactions -> prepare the dataset -> score the untrained model -> train a
LoRA adapter (the same `ethsft.train.run` a 7B run uses) -> reload the saved adapter -> generate -> score again.
Only the config and the sizes are special: on CPU configs/demo_cpu.yaml on a few hundred transactions; with a CUDA
GPU the GPU recipe (configs/smollm2_gpu_fast.yaml) on 25,000. Offline, the random-weight embedded model stands in.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import click
import torch

from ethsft.config import presets

REPO_CONFIG = presets.config("demo_cpu.yaml")
GPU_CONFIG = presets.config("smollm2_gpu_fast.yaml")
OFFLINE_CONFIG = presets.config("demo_cpu_random.yaml")
# (rows synthesized, test records scored, scoring batch): a CPU trains on a few hundred transactions in minutes; a
# GPU trains the accuracy recipe, whose ~20k training rows it needs to pass 95% field accuracy
SIZES = {"cpu": (280, 20, 10), "cuda": (25_000, 500, 128)}


def banner(text: str) -> None:
    click.secho(f"\n== {text} ==", bold=True)


def base_model_settings(config: Path, chosen: bool, overrides: dict, sets: tuple[str, ...]):
    """Settings whose base model is on this machine, and the config they come from: fetched now if needed. Where it
    cannot be fetched and the config is the demo's own, the offline preset (random weights) stands in, said in one
    line."""
    from ethsft.config.schema import load_settings, notice
    from ethsft.model.embedded import resolve
    from ethsft.model.pretrained import FetchError

    settings = load_settings(config, overrides, sets)
    try:
        click.echo(f"{settings.model.base_model} -> {resolve(settings.model.base_model)}")
    except FetchError as e:
        if chosen:
            raise click.ClickException(str(e)) from None
        settings = load_settings(OFFLINE_CONFIG, overrides, sets)
        notice(f"offline ({e.reason}): the demo trains "
               f"{settings.model.base_model} (random weights) instead, which shows the path, not accuracy")
        resolve(settings.model.base_model)
        return settings, OFFLINE_CONFIG
    return settings, config


def run_demo(output: str, rows: int | None, config_path: str | None, eval_samples: int | None, seed: int,
             sets: tuple[str, ...]) -> None:
    """Fetch a real chat model, then data -> train -> save -> reload -> generate -> accuracy; ``rows`` and
    ``eval_samples`` default to the device's ``SIZES``."""
    from ethsft.eth.prepare import prepare
    from ethsft.config.hf import resolve_precision
    from ethsft.eth.synth import generate_rows, write_rows
    from ethsft.evaluation import evaluate_model
    from ethsft.evaluation.metrics import format_table
    from ethsft.training.recipe import run

    started = time.time()
    out = Path(output)
    raw, data, run_dir = out / "decoded.csv", out / "datasets", out / "adapter"
    device = "cuda" if torch.cuda.is_available() else "cpu"
    default_rows, default_samples, batch_size = SIZES[device]
    rows, eval_samples = rows or default_rows, eval_samples or default_samples
    config = Path(config_path) if config_path else GPU_CONFIG if device == "cuda" else REPO_CONFIG

    banner("1/6 fetch the base model")
    overrides = {"data.dataset_dir": str(data), "training.output_dir": str(run_dir), "training.overwrite": True}
    settings, config = base_model_settings(config, config_path is not None, overrides, sets)

    banner(f"2/6 synthesize {rows} transactions")
    write_rows(raw, generate_rows(rows, seed))
    click.echo(f"wrote {raw}")

    banner("3/6 prepare the instruction dataset")
    summary = prepare(raw, data, split=(0.8, 0.1, 0.1), seed=seed, progress=False, count_tokens=False)
    click.echo(json.dumps({k: summary[k] for k in ("rows_read", "kept", "duplicates", "rejected", "splits") if k in summary}))
    test = data / "test.jsonl"
    # generate in the precision training computed in, the adapter merged (bf16 on CPUs with native bf16; as measured
    # 1.22x the samples per CPU-second of fp32 with the adapter apart, and 3 of 10 greedy answers moved by rounding)
    # on CPU batches of 10, longest prompts first: one batch of 20 pads every prompt to the longest and was slower
    scoring = dict(batch_size=batch_size, limit=eval_samples, progress=True,
                   system_prompt=settings.data.system_prompt,
                   dtype=torch.bfloat16 if resolve_precision(settings).bf16 else None)

    banner(f"4/6 score the untrained model on {eval_samples} test records (the baseline)")
    base = evaluate_model(settings.model.base_model, test, output_dir=out / "eval-untrained", **scoring)
    click.echo(format_table(base))

    kind = "4-bit QLoRA" if settings.quantization.load_in_4bit else "LoRA"
    banner(f"5/6 train a {kind} adapter ({config.name}, {device})")
    result = run(settings)

    banner(f"6/6 reload the adapter from {run_dir}, generate, score")
    tuned = evaluate_model(run_dir, test, output_dir=out / "eval-trained", **scoring)
    click.echo(format_table(tuned))

    banner(f"result: {settings.model.base_model}, {eval_samples} held-out test transactions")
    rows_out = [("valid JSON", "valid_json_rate"), ("field accuracy", "field_accuracy"),
                ("exact match", "exact_match")]
    click.echo(f"{'metric':<16}{'untrained':>11}{'trained':>10}")
    for label, key in rows_out:
        click.echo(f"{label:<16}{100 * base[key]:>10.1f}%{100 * tuned[key]:>9.1f}%")
    click.echo(f"train loss {result['train_loss']:.3f}, eval loss {result['final_eval_loss']:.3f}; "
               f"{time.time() - started:.0f}s in all; adapter in {run_dir}, predictions in {out}/eval-*/")
