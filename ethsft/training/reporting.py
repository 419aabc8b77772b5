"""What a run tells its user: console lines in the guide's format, training_logs.txt, the loss-curve
PNG and run_summary.json. Only the main process writes."""

from __future__ import annotations

import json
import math
import os
import re
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm
from transformers import TrainerCallback
from transformers.trainer_callback import ProgressCallback

from ethsft.units import GiB

def fmt_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    return f"{h}h {m}m" if h else (f"{m}m {s}s" if m else f"{s}s")


# --- secrets: never in logs, run_summary.json or the resolved config --------------------------------------------
SECRET_NAME = re.compile(r"token|key|secret|passw(or)?d|credential|auth", re.IGNORECASE)
NOT_SECRET_NAMES = {"max_new_tokens", "include_num_input_tokens_seen"}  # names that match but hold no secret
HF_TOKEN_RE = re.compile(r"\bhf_[A-Za-z0-9]{20,}\b")
REDACTED = "<redacted>"
ENV_PREFIXES = ("HF_", "HUGGING_FACE_", "TRANSFORMERS_", "ACCELERATE_", "WANDB_", "MLFLOW_", "CUDA_VISIBLE_DEVICES",
                "PYTORCH_CUDA_ALLOC_CONF", "ETHSFT_", "OMP_NUM_THREADS")


def is_secret_name(name: str) -> bool:
    return bool(SECRET_NAME.search(name)) and name not in NOT_SECRET_NAMES


def _secret_values() -> list[str]:
    """Values of environment variables whose names say they are secrets (longest first)."""
    values = {v for k, v in os.environ.items() if is_secret_name(k) and v and len(v) >= 6}
    return sorted(values, key=len, reverse=True)


def redact_text(text: str) -> str:
    """``text`` with secret environment values and Hugging Face tokens replaced by <redacted>."""
    for value in _secret_values():
        if value in text:
            text = text.replace(value, REDACTED)
    return HF_TOKEN_RE.sub(REDACTED, text)


def redact(obj):
    """A copy of ``obj`` (dicts, lists, strings) where string values under secret-looking names, secret environment
    values and Hugging Face tokens are <redacted>. Numbers stay (e.g. ``train_tokens`` is a count)."""
    if isinstance(obj, dict):
        return {k: (REDACTED if isinstance(v, str) and v and is_secret_name(str(k)) else redact(v))
                for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [redact(v) for v in obj]
    if isinstance(obj, str):
        return redact_text(obj)
    return obj


def run_environment() -> dict[str, str]:
    """The environment variables that shape a run (hub, trackers, devices), secrets redacted."""
    return redact({k: v for k, v in sorted(os.environ.items()) if k.startswith(ENV_PREFIXES)})


def say(line: str, log_path: Path | None, is_main: bool = True) -> None:
    """Print ``line`` (above any progress bar) and append it to the run's log file (main process only)."""
    if not is_main:
        return
    line = redact_text(line)
    tqdm.write(line)
    if log_path is not None:
        with open(log_path, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")


QUIET_EVAL_KEYS = {"eval_loss", "eval_runtime", "eval_samples_per_second", "eval_steps_per_second",
                   "eval_num_tokens", "eval_entropy"}


class ProgressBar(ProgressCallback):
    """transformers' progress bar without its raw metrics dicts: ProgressReporter prints readable lines."""

    def on_log(self, args, state, control, logs=None, **kwargs):
        pass


class ProgressReporter(TrainerCallback):
    """Step, loss, LR and time lines like the guide's "Expected output", plus validation lines."""

    def __init__(self, log_path: Path):
        self.log_path = log_path
        self.start = time.time()
        self.epoch_shown = -1

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not state.is_world_process_zero or not logs:
            return
        epoch = int(math.floor(logs.get("epoch", state.epoch or 0) - 1e-9)) if state.epoch else 0
        if "loss" in logs:
            if epoch != self.epoch_shown and state.num_train_epochs:
                self.epoch_shown = epoch
                say(f"\nEpoch {epoch + 1}/{math.ceil(state.num_train_epochs)}:", self.log_path)
            say(f"  Step {state.global_step}/{state.max_steps} | Loss: {logs['loss']:.4f} | "
                f"LR: {logs.get('learning_rate', 0.0):.1e} | Time: {fmt_duration(time.time() - self.start)}",
                self.log_path)
        if "eval_loss" in logs:
            extra = "".join(f" | {k[5:].replace('_', ' ').title()}: {v:.4f}" for k, v in logs.items()
                            if k.startswith("eval_") and k not in QUIET_EVAL_KEYS and isinstance(v, float))
            say(f"\nValidation: Loss: {logs['eval_loss']:.4f}{extra}", self.log_path)


def plot_losses(history: list[dict], path: Path) -> Path | None:
    """Train and eval loss against step, written atomically as a PNG."""
    train = [(h["step"], h["loss"]) for h in history if "loss" in h]
    evals = [(h["step"], h["eval_loss"]) for h in history if "eval_loss" in h]
    if not train and not evals:
        return None
    try:
        import matplotlib
    except ImportError:
        print("ethsft: matplotlib is not installed: no loss-curve PNG (pip install matplotlib)")
        return None

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    if train:
        ax.plot(*zip(*train), label="train loss", color="#1f77b4")
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss", color="#d62728")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(path.parent.name)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)
    return path


def peak_vram_gb() -> float | None:
    if not torch.cuda.is_available():
        return None
    return torch.cuda.max_memory_allocated() / GiB


def write_json_atomic(path: Path, data: dict) -> None:
    """``data`` as JSON (secrets redacted), written to a temporary file and renamed into place."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(redact_text(json.dumps(redact(data), indent=2, default=str)) + "\n", encoding="utf-8")
    os.replace(tmp, path)
