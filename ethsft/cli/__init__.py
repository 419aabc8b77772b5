"""The `ethsft` command: a thin click group over the modules that do the work."""

from __future__ import annotations

import os
import warnings

import click

from ethsft.cli.bench import main as bench
from ethsft.cli.demo import main as demo
from ethsft.cli.data import prepare, synth
from ethsft.cli.evaluate import evaluate, infer, merge
from ethsft.cli.hub import push
from ethsft.cli.ops import doctor, estimate, tune
from ethsft.cli.presets import main as presets
from ethsft.cli.train import main as train


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 110})
@click.version_option(package_name="ethsft")
def cli():
    """Fine-tune chat LLMs (QLoRA) to extract the structured intent of Ethereum transactions."""
    quiet_cpu_deepspeed()  # here, not at import: `ethsft --help` must not pay for importing torch


# peft still asks models `is_gradient_checkpointing`, which transformers 5.2x renamed: a warning for peft's
# maintainers, not for someone training
warnings.filterwarnings("ignore", message="`is_gradient_checkpointing` is deprecated", category=FutureWarning)


def quiet_cpu_deepspeed() -> None:
    """DeepSpeed (imported by transformers/accelerate when installed) warns "Setting accelerator to CPU. If you have
    GPU ... we were unable to detect it" on every CPU-only command. Where torch sees no accelerator either, say CPU up
    front."""
    if "DS_ACCELERATOR" not in os.environ:
        import torch

        if not torch.accelerator.is_available():
            os.environ["DS_ACCELERATOR"] = "cpu"


for command in (demo, synth, prepare, train, evaluate, infer, merge, push, doctor, estimate, tune, bench, presets):
    cli.add_command(command)
