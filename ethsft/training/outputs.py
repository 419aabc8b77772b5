"""Finding the checkpoint to resume from in an output folder (what may train into it: ``run_folder``)."""

from __future__ import annotations

import re
from pathlib import Path

from ethsft.config.schema import ConfigError

CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")
# The Trainer writes trainer_state.json last in a checkpoint: a folder without it was cut off mid-save.
COMPLETE_MARKER = "trainer_state.json"


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """Complete ``checkpoint-N`` folders in ``output_dir``, oldest first."""
    if not output_dir.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in output_dir.iterdir()
             if p.is_dir() and (m := CHECKPOINT_RE.match(p.name)) and (p / COMPLETE_MARKER).is_file()]
    return [p for _, p in sorted(found)]


def find_resume_checkpoint(output_dir: Path, requested: str | None) -> Path | None:
    """``latest`` -> the newest complete checkpoint in ``output_dir``; a path -> that checkpoint, checked."""
    if requested is None:
        return None
    if requested == "latest":
        found = complete_checkpoints(output_dir)
        if not found:
            raise ConfigError(f"--resume-from-checkpoint latest: no complete checkpoint in {output_dir}")
        return found[-1]
    path = Path(requested)
    if not path.is_dir():
        raise ConfigError(f"--resume-from-checkpoint: folder not found: {path}")
    if not (path / COMPLETE_MARKER).is_file():
        raise ConfigError(f"--resume-from-checkpoint: {path} is incomplete (no {COMPLETE_MARKER}); "
                          "it was cut off while saving. Use 'latest' to take the newest complete one")
    return path
