"""Every shell command shown in README.md and docs/ is run here, or by CI, or is a listed exception.

* the set-up commands are what `.ci/run` runs (CI), and the pytest markers the docs name are declared;
* the data commands run as written, in a scratch folder, and every `ethsft train` shown runs with `--dry-run`
  appended on the data they made (settings resolved and validated, nothing loaded);
* a command that needs a GPU, the Hub or a trained 7B model is listed in EXCEPTIONS with the reason and the test
  that runs the same command on the tiny model; its flags are still parsed by the real `ethsft` command, and the
  launch files and DeepSpeed JSONs it names must exist.

docs/guide.md is the user's guide quoted as written: its commands are the guide's (`python train.py`), not ethsft's.
"""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", *sorted(p for p in (REPO / "docs").glob("*.md") if p.name != "guide.md")]

# ethsft subcommands that run here as written (train: with --dry-run appended)
RUN = ("synth", "prepare", "train")
# the rest: why they do not run here, and the test that runs the same command on the tiny model
EXCEPTIONS = {
    "demo": ("downloads SmolLM2-135M-Instruct and trains ~8 minutes", "tests/model/test_pretrained.py"),
    "evaluate": ("needs a trained adapter or the 7B model from the Hub", "tests/evaluation/test_evaluate.py"),
    "infer": ("needs a trained adapter", "tests/evaluation/test_evaluate.py"),
    "merge": ("needs a trained adapter and its base model", "tests/evaluation/test_evaluate.py"),
    "push": ("needs a Hub token and a trained adapter", "tests/training/test_hub_push.py"),
    "doctor": ("judges a GPU machine and the 7B model's shape from the Hub", "tests/planning/test_doctor.py"),
    "estimate": ("reads the 7B model's config and tokenizer from the Hub", "tests/planning/test_estimate.py"),
    "tune": ("20 trainings of the 7B model", "tests/experiments/test_tune.py"),
    "accelerate": ("several GPUs", "tests/test_packaging.py"),
    "deepspeed": ("several GPUs", "tests/test_packaging.py"),
    "export": ("sets the Hub token", "tests/training/test_hub_push.py"),
}
SHELL_VARS = {"W": "scratch"}  # docs/scaling.md's work folder
# flags naming a user's own files: the command is parsed, not run; the test that runs it on files of its own
USER_FILES = {"--transactions": "tests/eth/test_etl_join.py", "--abi": "tests/eth/test_user_data.py",
              "--tokens": "tests/eth/test_user_data.py"}
SHIPPED = re.compile(r"\$\(ethsft presets --path (\S+)\)")  # a launch file named through the installed package


def launch_file(value: str) -> Path:
    """The file a launcher's --config_file / --deepspeed value names: a shipped one through `ethsft presets`."""
    from ethsft.config.presets import resolve_deepspeed_path

    named = SHIPPED.fullmatch(value)
    if named:
        from ethsft.cli import cli

        result = CliRunner().invoke(cli, ["presets", "--path", named.group(1)])
        assert result.exit_code == 0, result.output
        return Path(result.output.strip())
    path = REPO / value
    return path if path.is_file() else resolve_deepspeed_path(value)


def shell_blocks(path: Path) -> list[tuple[int, str]]:
    """(line number, command) for every command in the file's ```bash blocks: continuation lines joined,
    comment lines and blank lines dropped."""
    found, in_block, pending, first = [], False, "", 0
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not in_block:
            in_block = line.strip() == "```bash"
            continue
        if line.strip() == "```":
            in_block = False
            continue
        if not pending and (not line.strip() or line.strip().startswith("#")):
            continue
        first = first if pending else n
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        found.append((first, (pending + line).strip()))
        pending = ""
    return found


def all_commands() -> list[tuple[str, str]]:
    return [(f"{p.relative_to(REPO)}:{n}", c) for p in DOCS for n, c in shell_blocks(p)]


def words(cmd: str) -> list[str]:
    cmd = re.sub(r"\$(\w+)", lambda m: SHELL_VARS[m.group(1)], cmd)
    return shlex.split(cmd, comments=True)


def parse_ethsft(args: list[str]) -> dict:
    """The subcommand's parameters as the real `ethsft` command parses ``args`` (nothing is invoked)."""
    from ethsft.cli import cli

    name, rest = args[0], args[1:]
    command = cli.get_command(click.Context(cli), name)
    assert command is not None, f"no ethsft command {name!r}"
    return command.make_context(name, rest).params


def ethsft_args(ws: list[str]) -> list[str] | None:
    """The `ethsft` arguments inside a command line: `ethsft X ...`, or what a launcher hands the train module."""
    if ws[0] == "ethsft":
        return ws[1:]
    if "-m" in ws and ws[ws.index("-m") + 1] == "ethsft.train":
        return ["train", *ws[ws.index("-m") + 2:]]
    if "--module" in ws and ws[ws.index("--module") + 1] == "ethsft.train":  # the deepspeed launcher
        return ["train", *ws[ws.index("--module") + 2:]]
    if "launch/train.py" in ws:
        return ["train", *ws[ws.index("launch/train.py") + 1:]]
    return None


def test_the_docs_show_commands():
    cmds = all_commands()
    assert len(cmds) >= 20 and any(c.startswith("ethsft train") for _, c in cmds)


def test_set_up_commands_are_what_ci_runs():
    ci = {line.strip() for line in (REPO / ".ci" / "run").read_text().splitlines()}
    setup = [c for _, c in all_commands() if ".venv" in c]
    assert setup, "the README's set-up commands are gone"
    for cmd in setup:
        for part in cmd.split(" && "):
            if part in ("ethsft demo",):
                continue  # EXCEPTIONS["demo"]
            quiet = part.replace("pip install ", "pip install -q ")  # CI's install prints less, installs the same
            assert part in ci or quiet in ci, f"{cmd!r}: {part!r} is not a line of .ci/run"


def test_pytest_markers_in_the_docs_are_declared():
    import tomllib

    declared = {m.split(":")[0] for m in
                tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]}
    for where, cmd in all_commands():
        ws = words(cmd)
        if ws[0] == "pytest" and "-m" in ws:
            marker = ws[ws.index("-m") + 1]
            assert set(re.split(r"\W+", marker)) - {"not", "and", "or", ""} <= declared, where


def test_every_command_is_run_here_or_excepted():
    unknown = []
    for where, cmd in all_commands():
        ws = words(cmd)
        if ".venv" in cmd or ws[0] == "pytest":
            continue  # CI, above
        key = ws[1] if ws[0] == "ethsft" else ws[0]
        if key not in RUN and key not in EXCEPTIONS:
            unknown.append(f"{where}: {cmd}")
    assert unknown == [], "run these in this test, or list them in EXCEPTIONS with a reason"


def test_each_exception_names_a_test_that_runs_it_on_the_tiny_model():
    for command, (_, test) in {**EXCEPTIONS, **{f: ("", t) for f, t in USER_FILES.items()}}.items():
        assert (REPO / test).is_file(), f"{command}: {test} does not exist"


def test_data_commands_run_as_written_and_train_resolves_on_their_data(tmp_path, monkeypatch):
    from ethsft.cli import cli

    for name in ("configs", "launch", "deepspeed"):
        (tmp_path / name).symlink_to(REPO / name)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    runner = CliRunner()
    ran = []
    for where, cmd in all_commands():
        ws = words(cmd)
        args = ethsft_args(ws)
        if args is None:
            continue
        if ws[0] == "ethsft" and args[0] in RUN and not set(USER_FILES) & set(args):
            if args[0] == "train":
                if "--dataset" in args and not Path(args[args.index("--dataset") + 1]).exists():
                    continue  # a Hub dataset id: parsed below, run offline by tests/data/test_sources.py
                args = [*args, "--dry-run"]
            result = runner.invoke(cli, args, catch_exceptions=False)
            assert result.exit_code == 0, f"{where}: {cmd}\n{result.output[-2000:]}"
            ran.append(args[0])
    assert {"synth", "prepare", "train"} <= set(ran)
    assert sorted(p.name for p in (tmp_path / "data" / "datasets").glob("*.jsonl")) == [
        "rejects.jsonl", "test.jsonl", "train.jsonl", "validation.jsonl"]


@pytest.mark.parametrize("where,cmd", [pytest.param(w, c, id=w) for w, c in all_commands()
                                       if ethsft_args(words(c)) is not None])
def test_every_ethsft_command_shown_parses(where, cmd, tmp_path, monkeypatch):
    """Flags and values as the real command parses them; files a launcher is given must exist."""
    ws = words(cmd)
    for flag in ("--config_file", "--deepspeed"):
        if ws[0] in ("accelerate", "deepspeed") and flag in ws:
            assert launch_file(ws[ws.index(flag) + 1]).is_file(), f"{where}: {ws[ws.index(flag) + 1]} not found"
    args = ethsft_args(ws)
    monkeypatch.chdir(tmp_path)
    if args[0] == "push":  # its --output must exist: the run folder it pushes
        os.makedirs(args[args.index("--output") + 1])
    parse_ethsft(args)
