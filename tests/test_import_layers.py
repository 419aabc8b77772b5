"""ethsft's packages import downward only: an AST scan of every module's imports (module level, inside functions
and under ``TYPE_CHECKING`` alike) against the layer order that docs/architecture.md shows."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "ethsft"

# Top to bottom. A package may import its own modules and those of any layer below it, never one beside or above.
LAYERS = [
    ["ethsft", "__main__", "train"],  # the public formatters and the entry points
    ["cli"],  # click commands: parse flags, call one function below
    ["experiments"],  # demo, tune, bench: whole runs composed of training, evaluation and planning
    ["planning"],  # estimate, doctor, advice: reads what training would do, never the other way round
    ["training"],
    ["evaluation"],
    ["inference"],
    ["model"],
    ["eth"],
    ["config"],
    ["data"],
    ["fastpath"],
    ["presets"],
    ["filenames", "units"],  # names and constants, no imports
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}

# Imports that break the order, each with its reason, while they last; the test fails when one is gone, so the
# entry goes with it.
PENDING: dict[tuple[str, str], str] = {}  # (package, package it imports upward) -> why, while it lasts


def unit(module: str) -> str:
    """The layer unit of a dotted module name: its subpackage, or the top-level module itself."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "ethsft"


def imports(root: Path = ROOT) -> list[tuple[str, str, str]]:
    """(importing unit, imported unit, "file:line -> module") for every ethsft import in ethsft/."""
    found = []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root.parent).with_suffix("")
        parts = rel.parts[:-1] if rel.parts[-1] == "__init__" else rel.parts
        here = unit(".".join(parts))
        package = parts if path.name == "__init__.py" else parts[:-1]
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: resolve against this module's package
                    base = ".".join(list(package[:len(package) - node.level + 1]) + ([base] if base else []))
                names = [base]
            else:
                continue
            for name in names:
                if name == "ethsft" or name.startswith("ethsft."):
                    found.append((here, unit(name), f"{path.relative_to(root.parent)}:{node.lineno} -> {name}"))
    return found


def test_every_unit_has_a_layer():
    units = {u for edge in imports() for u in edge[:2]}
    units |= {p.name for p in ROOT.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
    units |= {p.stem for p in ROOT.glob("*.py") if p.stem != "__init__"}
    assert sorted(units - set(RANK)) == [], "add the new package or module to LAYERS (and docs/architecture.md)"


def test_packages_import_downward_only():
    upward = [f"{where} ({here} may not import {there})" for here, there, where in imports()
              if here != there and RANK[there] <= RANK[here] and (here, there) not in PENDING]
    assert upward == []


def test_pending_exceptions_still_exist():
    seen = {(here, there) for here, there, _ in imports()}
    assert [pair for pair in PENDING if pair not in seen] == [], "an exception is gone: remove it from PENDING"


def test_no_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for here, there, _ in imports():
        if here != there and (here, there) not in PENDING:
            graph.setdefault(here, set()).add(there)
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path + [node, nxt]
            if nxt not in state and (cycle := visit(nxt, path + [node])):
                return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            assert visit(start, []) is None


def test_the_scan_sees_function_level_and_relative_imports(tmp_path):
    pkg = tmp_path / "ethsft" / "low"
    pkg.mkdir(parents=True)
    (tmp_path / "ethsft" / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "m.py").write_text("def f():\n    from ethsft.cli import x\n\nfrom ..training import y\n")
    assert sorted((a, b) for a, b, _ in imports(tmp_path / "ethsft")) == [("low", "cli"), ("low", "training")]
