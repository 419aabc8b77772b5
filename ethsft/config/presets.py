"""The shipped presets, launch files and DeepSpeed JSONs, read from the installed package.

``ethsft/presets/`` links to a checkout's top-level ``configs/``, ``launch/`` and ``deepspeed/``: an editable install
reads the checkout's own files, and a wheel carries copies of them.

A file is named as a path (used when it exists), else by its shipped name with or without the suffix
(``tiny_cpu``, ``zero2.json``), or by the checkout-relative path the docs show (``configs/tiny_cpu.yaml``,
``deepspeed/zero2.json``), which then works from any folder.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

# folder -> (suffix, what the error calls its files)
KINDS = {"configs": (".yaml", "config file"), "launch": (".yaml", "launch file"),
         "deepspeed": (".json", "DeepSpeed config")}
# the guide calls its default config the 12GB preset; the file keeps the guide's name
ALIASES = {"12gb": "training_config"}


def _file(package: str, name: str) -> Path:
    return Path(str(resources.files(package).joinpath(name)))


def config(name: str) -> Path:
    """A preset YAML, e.g. ``config("demo_cpu.yaml")``."""
    return _file("ethsft.presets", f"configs/{name}")


def launch_file(name: str) -> Path:
    """An accelerate launch file, e.g. ``launch_file("zero2.yaml")``."""
    return _file("ethsft.presets", f"launch/{name}")


def deepspeed_file(name: str) -> Path:
    """A DeepSpeed JSON, e.g. ``deepspeed_file("zero2.json")``."""
    return _file("ethsft.presets", f"deepspeed/{name}")


def shipped(kind: str) -> list[Path]:
    """The shipped files of one kind (``configs``, ``launch``, ``deepspeed``), sorted 8gb before 12gb."""
    suffix = KINDS[kind][0]
    files = [Path(str(f)) for f in resources.files("ethsft.presets").joinpath(kind).iterdir()
             if f.name.endswith(suffix)]
    return sorted(files, key=lambda p: _natural(p.stem))


def names(kind: str) -> list[str]:
    """Every name a shipped file of ``kind`` answers to by its stem, aliases included (``12gb``)."""
    stems = [p.stem for p in shipped(kind)]
    if kind == "configs":
        stems += [alias for alias, target in ALIASES.items() if target in stems]
    return sorted(stems, key=_natural)


def find_shipped(kind: str, name: str) -> Path | None:
    """The shipped file ``name`` stands for (``tiny_cpu``, ``tiny_cpu.yaml``, ``configs/tiny_cpu.yaml``,
    ``12gb``), or None. A path into any other folder never names a shipped file."""
    given = Path(name)
    if given.parent not in (Path("."), Path(kind)):
        return None
    suffix = KINDS[kind][0]
    stem = given.name.removesuffix(suffix)
    if kind == "configs":
        stem = ALIASES.get(stem, stem)
    path = _file("ethsft.presets", f"{kind}/{stem}{suffix}")
    return path if stem and path.is_file() else None


def resolve(kind: str, name: str | Path) -> Path:
    """``name`` as given when that file exists, else the shipped file it names; ConfigError naming both."""
    given = Path(name).expanduser()
    if given.is_file():
        return given
    found = find_shipped(kind, str(name))
    if found is not None:
        return found
    # schema imports this module (load_settings resolves --config here), so ConfigError comes in at raise time
    from ethsft.config.schema import ConfigError

    what = KINDS[kind][1]
    listed = ", ".join(f"{n} (= {ALIASES[n]})" if n in ALIASES else n for n in names(kind))
    raise ConfigError(f"{what} not found: {name} (shipped: {listed}; `ethsft presets` describes them)")


def resolve_config_path(name: str | Path) -> Path:
    """``--config NAME``: the file as given if it exists, else the shipped preset (``tiny_cpu``, ``12gb``,
    ``configs/tiny_cpu.yaml``); ConfigError "config file not found: NAME (shipped: 8gb, 12gb (= training_config),
    ...)" otherwise."""
    return resolve("configs", name)


def resolve_deepspeed_path(name: str | Path) -> Path:
    """``--deepspeed NAME``: the JSON as given if it exists, else the shipped one (``zero2``, ``zero2.json``,
    ``deepspeed/zero2.json``); ConfigError otherwise."""
    return resolve("deepspeed", name)


@dataclass(frozen=True)
class Entry:
    kind: str
    name: str  # what --config / --deepspeed / `ethsft presets --path` take
    path: Path
    summary: str


def catalogue() -> list[Entry]:
    """Every shipped file with the one-line summary its header comment (or a JSON's ``_comment``) opens with;
    an alias (``12gb``) is listed in its place with the file it stands for."""
    out = []
    for kind in KINDS:
        files = {p.stem: p for p in shipped(kind)}
        for name in names(kind):
            path = files[ALIASES.get(name, name) if kind == "configs" else name]
            if kind == "configs":
                out.append(Entry(kind, name, path, f"= {path.stem}" if name != path.stem else summary(path)))
            else:
                out.append(Entry(kind, path.name, path, summary(path)))
    return out


def find_anywhere(name: str) -> list[Path]:
    """The shipped files of any kind that ``name`` names: one, none, or several for a bare stem such as ``zero2``
    (launch/zero2.yaml and deepspeed/zero2.json)."""
    return [p for p in (find_shipped(kind, name) for kind in KINDS) if p is not None]


def summary(path: Path, width: int = 110) -> str:
    """The header's first sentence, up to its second top-level ``: `` (the preset's name and its gist), clipped to
    ``width`` at a word."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        header = json.loads(text).get("_comment", "")
    else:
        lines = []
        for line in text.splitlines():
            body = line.strip().removeprefix("#").strip()
            if not line.startswith("#") or not body or line.startswith("#   "):  # the command lines end the prose
                break
            lines.append(body)
        header = " ".join(lines)
    sentence = re.split(r"(?<=\.)\s", header, maxsplit=1)[0]
    depth, colons = 0, 0
    for i, ch in enumerate(sentence):
        depth += {"(": 1, ")": -1}.get(ch, 0)
        if ch == ":" and depth == 0 and sentence[i + 1:i + 2] == " ":
            colons += 1
            if colons == 2:
                sentence = sentence[:i]
                break
    if len(sentence) > width:
        sentence = sentence[:width - 4].rsplit(" ", 1)[0].rstrip(",;:") + " ..."
    return sentence


def _natural(name: str) -> tuple:
    number = re.match(r"\d+", name)
    return (0, int(number.group()), name) if number else (1, 0, name)
