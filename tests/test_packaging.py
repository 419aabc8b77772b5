"""A built wheel works outside the checkout: presets, launch files and DeepSpeed JSONs ship inside the package."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed_wheel(tmp_path_factory):
    """The wheel pip builds from this checkout, unpacked into a folder of its own (dependencies: this venv's)."""
    tmp = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(tmp / "dist"), str(REPO)],
                   check=True, capture_output=True)
    (wheel,) = (tmp / "dist").glob("ethsft-*.whl")
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(tmp / "site"),
                    str(wheel)], check=True, capture_output=True)
    return tmp / "site"


# one process for every command (each process pays the torch and transformers imports)
COMMANDS = """
import json, sys
from click.testing import CliRunner
import ethsft
from ethsft.cli import cli

config, dataset, output = sys.argv[1:4]
runs = {name: CliRunner().invoke(cli, args) for name, args in {
    "demo": ["demo", "--help"], "bench": ["bench", "--help"],
    "train": ["train", "--config", config, "--dataset", dataset, "--output", output, "--num-processes", "2",
              "--dry-run"],
    "by_name": ["train", "--config", "tiny_cpu", "--dataset", dataset, "--output", output, "--dry-run"],
    "path": ["presets", "--path", "zero2.yaml"]}.items()}
print(json.dumps({"package": ethsft.__file__, **{name: [r.exit_code, r.output + getattr(r, "stderr", "")]
                                                    for name, r in runs.items()}}))
"""


@pytest.mark.slow  # subprocesses
def test_the_wheel_runs_demo_bench_and_a_packaged_preset_away_from_the_checkout(installed_wheel, tmp_path,
                                                                                small_dataset):
    import json

    shipped = installed_wheel / "ethsft" / "presets"
    assert not (shipped / "configs").is_symlink()  # copies, not the checkout's links
    assert (shipped / "configs" / "demo_cpu.yaml").is_file() and (shipped / "launch" / "zero2.yaml").is_file()
    assert (shipped / "deepspeed" / "zero2.json").is_file()
    # a plain install builds the embedded models (protobuf reads tokenizer.model) and pins the tested majors
    (metadata,) = installed_wheel.glob("ethsft-*.dist-info/METADATA")
    requires = {line.removeprefix("Requires-Dist: ") for line in metadata.read_text().splitlines()}
    assert {"protobuf>=7.36.1", "transformers<6,>=5.17", "trl<2,>=1.16"} <= requires
    empty = tmp_path / "empty"
    empty.mkdir()
    done = subprocess.run([sys.executable, "-c", COMMANDS, str(shipped / "configs" / "tiny_cpu.yaml"),
                           str(small_dataset), str(tmp_path / "run")], cwd=empty, capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(installed_wheel)))  # ahead of the editable install
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["package"] == str(installed_wheel / "ethsft" / "__init__.py")
    assert out["demo"][0] == 0 and "Fetch a real chat model" in out["demo"][1]
    assert out["bench"][0] == 0
    assert out["train"][0] == 0, out["train"][1]
    assert str(shipped / "launch" / "ddp.yaml") in out["train"][1]
    assert out["by_name"][0] == 0, out["by_name"][1]  # --config tiny_cpu: the installed preset
    assert "embedded:tiny-mistral" in out["by_name"][1]
    assert out["path"] == [0, f"{shipped / 'launch' / 'zero2.yaml'}\n"]
    assert list(empty.iterdir()) == []


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_from_empty_folder(line: str, site: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run a README launch line with bash from an empty folder, the wheel's `ethsft` first on PATH and the wheel's
    package ahead of the editable install; 2 CPU processes. bash -x traces each command with its $(...) expanded."""
    empty = tmp_path / "empty"
    empty.mkdir()
    path = os.pathsep.join([str(site / "bin"), str(Path(sys.executable).parent), os.environ["PATH"]])
    env = dict(os.environ, PATH=path, PYTHONPATH=str(site), OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="",
               DS_ACCELERATOR="cpu")
    proc = subprocess.run(["bash", "-xc", line], cwd=empty, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-5000:]
    return proc


def check_zero2_run(out: Path) -> None:
    """Two ranks trained 2 steps under DeepSpeed ZeRO-2 with the shipped JSON's settings, and saved the adapter."""
    import json

    import torch

    summary = json.loads((out / "run_summary.json").read_text())
    assert (summary["num_processes"], summary["global_step"]) == (2, 2)
    assert (out / "adapter_model.safetensors").is_file()
    states = out / "checkpoint-2" / "global_step2"
    assert sorted(p.name for p in states.glob("zero_pp_rank_*")) == [
        "zero_pp_rank_0_mp_rank_00_optim_states.pt", "zero_pp_rank_1_mp_rank_00_optim_states.pt"]
    model_states = torch.load(states / "mp_rank_00_model_states.pt", map_location="cpu", weights_only=False)
    shipped = json.loads((REPO / "deepspeed" / "zero2.json").read_text())["zero_optimization"]
    assert model_states["dp_world_size"] == 2
    assert model_states["ds_config"]["zero_optimization"] == {**shipped, "reduce_bucket_size": 4096}  # "auto" filled


TINY = "--config tiny_cpu --dataset {data} --output out --set training.max_steps=2"


@pytest.mark.slow
@pytest.mark.distributed
def test_readme_accelerate_zero2_line_runs_from_an_empty_folder(installed_wheel, tiny_model_path, small_dataset,
                                                                 tmp_path):
    """The README's ZeRO-2 line (tiny preset, 2 processes): the launch file's relative deepspeed/zero2.json is found."""
    line = (f'accelerate launch --config_file "$(ethsft presets --path zero2.yaml)" --num_processes 2 '
            f"--main_process_port {free_port()} -m ethsft.train " + TINY.format(data=small_dataset))
    proc = launch_from_empty_folder(line, installed_wheel, tmp_path)
    assert f"--config_file {installed_wheel / 'ethsft' / 'presets' / 'launch' / 'zero2.yaml'}" in proc.stderr
    check_zero2_run(tmp_path / "empty" / "out")


@pytest.mark.slow
@pytest.mark.distributed
def test_readme_deepspeed_module_line_runs_from_an_empty_folder(installed_wheel, tiny_model_path, small_dataset,
                                                                tmp_path):
    line = (f"deepspeed --num_gpus 2 --master_port {free_port()} --module ethsft.train --deepspeed zero2 "
            + TINY.format(data=small_dataset))
    launch_from_empty_folder(line, installed_wheel, tmp_path)
    check_zero2_run(tmp_path / "empty" / "out")
