"""Outputs checked before the work: `infer`, `evaluate` and `synth` ask whether they can write where they were told
before a model loads or a row is generated, so that minutes of generation are never lost to a bad path."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click


def check_output(path: str | Path, flag: str = "--output", folder: bool = False) -> None:
    """A one-line ClickException unless ``path`` (a file, or with ``folder`` a folder) can be written: not empty, not
    under a file, not a folder where a file goes (or the reverse), and its nearest existing folder takes a new file
    (a probe file is created there and removed; nothing else is written)."""
    text = str(path)
    if not text.strip():
        raise click.ClickException(f"{flag} is empty: name the {'folder' if folder else 'file'} to write")
    target = Path(text)
    if target.is_dir() and not folder:
        raise click.ClickException(f"{flag} {target} is a folder; name a file")
    if target.exists() and not target.is_dir() and folder:
        raise click.ClickException(f"{flag} {target} is a file; name a folder")
    home = target if folder else target.parent
    existing = next((p for p in [home, *home.parents] if p.exists()), Path("."))
    if not existing.is_dir():
        raise click.ClickException(f"{flag} {target}: cannot write there ({existing} is a file)")
    try:
        with tempfile.NamedTemporaryFile(dir=existing, prefix=".ethsft-write-probe-"):
            pass
        if target.is_file():
            with open(target, "ab"):  # opened for appending, written to nothing: is the file itself writable?
                pass
    except OSError as e:
        raise click.ClickException(f"{flag} {target}: cannot write there ({e.strerror or e})") from None
