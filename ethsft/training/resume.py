"""What a resume needs from its checkpoint, checked before the model loads: the adapter, readable; the optimizer,
scheduler and RNG state (without them transformers resumes silently with fresh ones, and the run ends elsewhere
than an uninterrupted one would); and the adapter's shape as the config asks for it."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from ethsft.config.schema import ConfigError, Settings

from peft.utils import CONFIG_NAME as ADAPTER_CONFIG, SAFETENSORS_WEIGHTS_NAME as ADAPTER_WEIGHTS
from transformers.trainer import OPTIMIZER_NAME, SCHEDULER_NAME

# torch.save writes zip archives; transformers writes these with it in every checkpoint (DeepSpeed: the optimizer,
# and its own scheduler, go into global_step*/ instead; rng_state_<rank>.pth under several processes)
STATE_FILES = {OPTIMIZER_NAME: "optimizer state", SCHEDULER_NAME: "learning-rate scheduler state",
               "rng_state.pth": "RNG state"}


def check_resumable(checkpoint: Path, s: Settings) -> None:
    """Refuse ``checkpoint`` (one line) when a file a faithful resume reads is missing or cut off, or when the
    config would give the adapter another shape."""
    where = f"--resume-from-checkpoint: {checkpoint}"
    _check_adapter(checkpoint, where)
    deepspeed = any(checkpoint.glob("global_step*"))
    for name, what in STATE_FILES.items():
        if name != "rng_state.pth" and deepspeed and not (checkpoint / name).is_file():
            continue
        found = sorted(checkpoint.glob("rng_state*.pth")) if name == "rng_state.pth" else [checkpoint / name]
        if not found or not found[0].is_file():
            raise ConfigError(f"{where} has no {name} ({what}); resuming without it would not continue the same "
                              "run. Resume from another checkpoint, or train anew")
        for path in found:
            if not zipfile.is_zipfile(path):
                raise ConfigError(f"{where}: {path.name} is truncated or damaged ({what}); resume from another "
                                  "checkpoint, or train anew")
    _check_shape(checkpoint, s, where)


def _check_adapter(checkpoint: Path, where: str) -> None:
    from safetensors import SafetensorError, safe_open

    weights = checkpoint / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise ConfigError(f"{where} has no {ADAPTER_WEIGHTS}; resume from another checkpoint")
    try:
        with safe_open(str(weights), "pt") as f:
            f.keys()
    except (SafetensorError, OSError) as e:
        raise ConfigError(f"{where}: {ADAPTER_WEIGHTS} is truncated or damaged ({e}); resume from another "
                          "checkpoint") from None


def _check_shape(checkpoint: Path, s: Settings, where: str) -> None:
    try:
        saved = json.loads((checkpoint / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise ConfigError(f"{where} has no readable {ADAPTER_CONFIG}; resume from another checkpoint") from None
    if saved.get("r") is not None and saved["r"] != s.lora.r:
        raise ConfigError(f"{where} was trained with lora.r={saved['r']}, the config says lora.r={s.lora.r}: a resume "
                          f"keeps the adapter's shape (set lora.r={saved['r']}, or train anew with --overwrite)")
    theirs, ours = sorted(saved.get("modules_to_save") or []), sorted(s.lora.modules_to_save or [])
    if theirs != ours:
        raise ConfigError(f"{where} was trained with lora.modules_to_save={theirs}, the config says {ours}: a resume "
                          f"keeps the adapter's shape (set lora.modules_to_save={theirs}, or train anew with "
                          "--overwrite)")
