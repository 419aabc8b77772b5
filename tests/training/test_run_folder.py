"""A run's folder belongs to one run: --overwrite replaces all of an earlier run and nothing else, a lock keeps a
second run out (two real tiny runs), a stale lock is taken over."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time

import pytest
from conftest import REPO, tiny_settings, wait_for

from ethsft.config.schema import ConfigError
from ethsft.training.run_folder import LOCK, MARKER, claim

SHORT = ("training.max_steps=2", "logging.save_steps=2", "logging.eval_steps=2", "logging.eval_accuracy_samples=0")


def checksums(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_overwrite_leaves_no_file_of_the_earlier_run(small_dataset, tmp_path):
    from ethsft.training.recipe import run

    out = tmp_path / "run"
    run(tiny_settings(small_dataset, out, "training.max_steps=4", *SHORT[1:]))
    assert (out / "checkpoint-4").is_dir() and (out / MARKER).is_file()
    with pytest.raises(ConfigError) as e:  # without --overwrite: kept
        run(tiny_settings(small_dataset, out, *SHORT))
    assert str(e.value) == (f"{out} already holds a finished run (run_summary.json); pass --overwrite to replace "
                            "it, --resume-from-checkpoint latest to continue it, or choose another --output")
    summary = run(tiny_settings(small_dataset, out, "training.overwrite=true", *SHORT))
    assert summary["global_step"] == 2
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("checkpoint-")) == ["checkpoint-2"]
    assert (out / "training_logs.txt").read_text().count("Starting training") == 1
    assert json.loads((out / "run_summary.json").read_text())["global_step"] == 2
    assert not (out / LOCK).exists()  # released at the end


def test_overwrite_refuses_a_folder_holding_anything_else(small_dataset, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "run_summary.json").write_text("{}")
    (out / "notes.txt").write_text("mine\n")
    (out / "README.md").write_text("# my own README\n")
    before = checksums(out)
    with pytest.raises(ConfigError) as e:
        claim(str(out), True, None, {})
    assert str(e.value) == (f"--output {out} holds README.md, notes.txt, which an ethsft training run did not "
                            "write; --overwrite replaces only an earlier run, so nothing was removed; choose another "
                            "--output or move them away")
    assert checksums(out) == before


def test_output_that_is_or_holds_an_input_is_refused(small_dataset, tmp_path):
    before = checksums(small_dataset)
    for output in (small_dataset, small_dataset.parent):
        with pytest.raises(ConfigError) as e:
            claim(str(output), True, None, {"the dataset": str(small_dataset)})
        assert str(e.value) == (f"--output {output} holds the dataset {small_dataset}, which the run reads; choose "
                                "another --output")
    assert checksums(small_dataset) == before


@pytest.mark.parametrize("output, message", [
    ("", "--output is empty: name the folder for the run (e.g. --output runs/eth-intent)"),
    ("{file}", "--output {file} is a file, not a folder"),
    ("{file}/run", "--output {file}/run: cannot create or write the folder ({file} is a file)"),
])
def test_unusable_output_is_one_line(tmp_path, output, message):
    file = tmp_path / "a-file"
    file.write_text("x")
    with pytest.raises(ConfigError) as e:
        claim(output.format(file=file), False, None, {})
    assert str(e.value) == message.format(file=file)
    assert file.read_text() == "x"


def test_a_live_lock_stops_a_second_run_and_a_stale_one_is_taken_over(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        (out / LOCK).write_text(json.dumps({"pid": other.pid, "host": socket.gethostname(), "started": 0}))
        with pytest.raises(ConfigError) as e:
            claim(str(out), False, None, {})
        assert str(e.value).startswith(f"{out} is in use by another run (pid {other.pid} on {socket.gethostname()}, "
                                       "since ")
    finally:
        other.kill()
        other.wait()
    lock = claim(str(out), False, None, {})  # the pid is gone: stale
    assert json.loads((out / LOCK).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (out / LOCK).exists()


def test_a_second_train_into_a_busy_folder_stops_at_once(small_dataset, tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}

    def train(*extra):
        cmd = [sys.executable, "-m", "ethsft", "train", "--config", "configs/tiny_cpu.yaml", "--dataset",
               str(small_dataset), "--output", str(out), "--set", "training.max_steps=6", "--set",
               "logging.save_steps=2", "--set", "logging.eval_steps=2", *extra]
        return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    first = train()
    wait_for(lambda: (out / LOCK).exists(), first, "the first run's lock")
    started = time.time()
    second = train("--overwrite")  # the worst case: it would remove the first run's files
    output, _ = second.communicate(timeout=120)
    assert second.returncode == 1, output
    assert time.time() - started < 30
    pid = json.loads((out / LOCK).read_text())["pid"]
    assert f"Error: {out} is in use by another run (pid {pid} on " in output
    assert first.wait(timeout=600) == 0
    summary = json.loads((out / "run_summary.json").read_text())
    assert summary["global_step"] == 6 and (out / "checkpoint-6").is_dir()
    assert (out / "training_logs.txt").read_text().count("Starting training") == 1
