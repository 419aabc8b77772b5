"""A training run's output folder belongs to one run.

* **Marker.** A run writes ``ethsft_run.json`` first: what ``--overwrite`` may replace is a folder that an earlier
  ``ethsft train`` wrote (the marker, or ``run_summary.json`` for runs from before the marker), holding nothing but
  what a run writes (:data:`RUN_ENTRIES`). ``--overwrite`` then removes all of it: checkpoints, logs, summary.
* **Lock.** ``.ethsft.lock`` holds the pid and host of the run using the folder, from before the first write to
  the end of the run. A second run into the folder stops at once; a lock whose process is gone (same host) is stale
  and taken over.
* **Inputs.** The folder is never the dataset, the base model or the checkpoint a run reads, nor one holding them.
"""

from __future__ import annotations

import atexit
import fnmatch
import json
import os
import shutil
import socket
import time
from pathlib import Path

from ethsft.config.schema import ConfigError

from ethsft.filenames import (CARD_FILE, LOCK_FILE as LOCK, LOG_FILE, PLOT_FILE, RUN_MARKER_FILE as MARKER,
                              SIDE_CARD_FILE, SUMMARY_FILE)

# Everything a training run (and `ethsft push` of it) writes at the top of its folder. A README.md counts only
# when a tool generated it (TRL's card, ethsft's): one the user wrote is theirs.
RUN_ENTRIES = (MARKER, LOCK, LOG_FILE, SUMMARY_FILE, PLOT_FILE, CARD_FILE, SIDE_CARD_FILE, "training_args.bin",
               "adapter_config.json", "adapter_model.safetensors", "adapter_model.bin", "chat_template.jinja",
               "chat_template.json", "tokenizer.json", "tokenizer_config.json", "tokenizer.model",
               "special_tokens_map.json", "added_tokens.json", "logs", "runs", "checkpoint-*", ".tmp-checkpoint",
               ".old-checkpoint-*", f"{LOCK}.*")
# what a run leaves that is worth keeping: without any, a folder is an attempt that stopped before its first
# checkpoint (bad data, out of memory at load) and a new run may go on in it, appending to its log
RESULTS = ("checkpoint-*", "adapter_model.*", SUMMARY_FILE)


class RunFolderBusy(ConfigError):
    """Another live process is training into the folder."""


def _is_run_entry(path: Path) -> bool:
    if path.name == "README.md":
        from ethsft.model.hub import is_generated_card

        return is_generated_card(path)
    return any(fnmatch.fnmatchcase(path.name, pattern) for pattern in RUN_ENTRIES)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def holder(folder: Path) -> dict | None:
    """The live run holding ``folder``'s lock (its pid, host, start time), or None (no lock, a stale one, ours)."""
    try:
        held = json.loads((folder / LOCK).read_text(encoding="utf-8"))
        pid, host = int(held["pid"]), str(held["host"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):  # half-written by a process that died writing it
        return None
    if pid == os.getpid() or (host == socket.gethostname() and not _alive(pid)):
        return None
    return held


def _busy(folder: Path, held: dict) -> RunFolderBusy:
    since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(held.get("started", 0)))
    return RunFolderBusy(f"{folder} is in use by another run (pid {held['pid']} on {held['host']}, since {since}); "
                         f"wait for it to finish or choose another --output (a lock left by a crash on another host: "
                         f"remove {folder / LOCK})")


class RunLock:
    """The folder's lock, held by this process until :meth:`release` (or exit)."""

    def __init__(self, folder: Path):
        self.path = folder / LOCK
        held = holder(folder)
        if held is not None:
            raise _busy(folder, held)
        body = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()})
        tmp = folder / f"{LOCK}.{os.getpid()}"
        tmp.write_text(body, encoding="utf-8")
        try:
            os.link(tmp, self.path)  # atomic: fails if another process took the lock in between
        except FileExistsError:
            held = holder(folder)
            if held is not None:
                raise _busy(folder, held) from None
            os.replace(tmp, self.path)  # stale, or ours: take it over
        finally:
            tmp.unlink(missing_ok=True)
        atexit.register(self.release)

    def release(self) -> None:
        try:
            held = json.loads(self.path.read_text(encoding="utf-8"))
            if int(held["pid"]) == os.getpid():
                self.path.unlink()
        except (OSError, ValueError, KeyError, TypeError):
            pass


def _inside(path: Path, folder: Path) -> bool:
    path, folder = path.resolve(), folder.resolve()
    return path == folder or path.is_relative_to(folder)


def refuse_busy(output_dir: str) -> None:
    """Raise RunFolderBusy when a live run holds ``output_dir``: what `ethsft train` asks first, before loading
    torch, so that a second run stops within seconds."""
    held = holder(Path(output_dir)) if output_dir.strip() else None
    if held is not None:
        raise _busy(Path(output_dir), held)


def claim(output_dir: str, overwrite: bool, resume: Path | None, inputs: dict[str, str | None]) -> RunLock:
    """Check ``output_dir`` for a new run (or one resumed from ``resume``), lock it, clear an earlier run when
    ``overwrite``, and write the marker. ``inputs``: what the run reads, by what to call it (e.g. ``{"the dataset":
    data.dataset_dir}``; hub ids are skipped). Raises ConfigError (RunFolderBusy when another run holds it)."""
    if not output_dir.strip():
        raise ConfigError("--output is empty: name the folder for the run (e.g. --output runs/eth-intent)")
    out = Path(output_dir)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--output {out} is a file, not a folder")
    for what, path in inputs.items():
        if path and Path(path).exists() and _inside(Path(path), out) and not (what == "the checkpoint" and not overwrite):
            raise ConfigError(f"--output {out} holds {what} {path}, which the run reads; choose another --output")
    if out.is_dir():
        held = holder(out)
        if held is not None:
            raise _busy(out, held)
        if resume is None:
            _check_fresh(out, overwrite)
    try:
        out.mkdir(parents=True, exist_ok=True)
        lock = RunLock(out)
    except OSError as e:
        file = next((q for q in out.parents if q.exists() and not q.is_dir()), None)
        reason = f"{file} is a file" if file is not None else (e.strerror or type(e).__name__)
        raise ConfigError(f"--output {out}: cannot create or write the folder ({reason})") from None
    if overwrite and resume is None:
        for entry in out.iterdir():
            if entry.name != LOCK:
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
    if not (out / MARKER).exists():
        (out / MARKER).write_text(json.dumps({"kind": "train", "started": time.time()}) + "\n", encoding="utf-8")
    return lock


def _check_fresh(out: Path, overwrite: bool) -> None:
    """A new run goes into an empty folder, or with --overwrite into an earlier run's folder holding only it."""
    entries = sorted(out.iterdir())
    if not entries:
        return
    other = [e.name for e in entries if not _is_run_entry(e)]
    if other:
        shown = ", ".join(other[:5]) + (f" and {len(other) - 5} more" if len(other) > 5 else "")
        raise ConfigError(f"--output {out} holds {shown}, which an ethsft training run did not write; "
                          f"{'--overwrite replaces only an earlier run, so nothing was removed; ' if overwrite else ''}"
                          "choose another --output or move them away")
    if overwrite:
        if not ((out / MARKER).exists() or (out / SUMMARY_FILE).exists()):
            raise ConfigError(f"--overwrite: {out} holds no ethsft run ({MARKER} or {SUMMARY_FILE}), so nothing was "
                              "removed; choose another --output")
        return
    if (out / SUMMARY_FILE).exists():
        raise ConfigError(f"{out} already holds a finished run ({SUMMARY_FILE}); pass --overwrite to replace it, "
                          "--resume-from-checkpoint latest to continue it, or choose another --output")
    results = [e.name for e in entries if any(fnmatch.fnmatchcase(e.name, p) for p in RESULTS)]
    if not results:
        return
    raise ConfigError(f"{out} holds an unfinished run ({', '.join(results)}); pass "
                      "--resume-from-checkpoint latest to continue it, --overwrite to replace it, or choose another "
                      "--output")
