"""Sharing a model: `training.push_to_hub`, `ethsft merge --push-to-hub` and `ethsft push`, against a local mock of
the Hugging Face Hub (tests/hub_mock.py, on 127.0.0.1; no network). What is pushed, what the model card says, the
failure messages, and that the token is sent to the Hub and written nowhere."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import REPO
from hub_mock import MockHub, closed_port_url

TOKEN = "hf_secret_test_token"
REPO_ID = "tester/eth-intent"
ADAPTER_PUSHED = {"adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "tokenizer_config.json",
                  "chat_template.jinja", "loss_curves.png", "README.md"}


def no_token_in(folder: Path) -> list[str]:
    """Files under ``folder`` whose bytes contain the token."""
    return [str(p) for p in folder.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()]


def tree(folder: Path, skip=("README.md",)) -> dict[str, str]:
    """Every file under ``folder`` (relative path -> sha256), but ``skip``."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name not in skip}


@pytest.fixture
def hub_env(monkeypatch, tmp_path):
    """huggingface_hub pointed at a mock Hub (set per test), online, with HF_TOKEN and a private HF_HOME."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "hf-home" / "token"))
    monkeypatch.setattr(constants, "AGENT_HARNESSES_PATH", str(tmp_path / "hf-home" / "harnesses.json"))

    def point_at(url: str):
        monkeypatch.setattr(constants, "ENDPOINT", url)

    return point_at


@pytest.fixture(scope="module")
def pushed(tmp_path_factory, ethsft_cache):
    """`ethsft prepare` on 40 synthetic transactions, then `ethsft train ... --push-to-hub` in a fresh process
    (stdout and stderr captured whole) against the mock Hub, with HF_TOKEN set."""
    from ethsft.eth.prepare import prepare
    from ethsft.eth.synth import generate_rows, write_rows

    root = tmp_path_factory.mktemp("hub-run")
    write_rows(root / "decoded.csv", list(generate_rows(40, 1)))
    prepare(root / "decoded.csv", root / "datasets", progress=False, count_tokens=False)
    out = root / "run"
    env = {**os.environ, "HF_TOKEN": TOKEN, "HF_HUB_OFFLINE": "0", "HF_HOME": str(root / "hf-home"),
           "ETHSFT_CACHE": str(ethsft_cache), "PYTHONPATH": str(REPO)}
    with MockHub() as hub:
        env["HF_ENDPOINT"] = hub.url
        proc = subprocess.run(
            [sys.executable, "-m", "ethsft", "train", "--config", str(REPO / "configs" / "tiny_cpu.yaml"),
             "--dataset", str(root / "datasets"), "--output", str(out), "--batch-size", "4",
             "--set", "training.max_steps=3", "--set", "logging.eval_steps=3", "--set", "logging.save_steps=3",
             "--set", "data.max_length=256", "--set", "logging.logging_steps=1",
             "--push-to-hub", "--hub-model-id", REPO_ID],
            cwd=root, env=env, capture_output=True, text=True, timeout=300)
    return {"proc": proc, "hub": hub, "out": out, "root": root}


def test_train_pushes_adapter_tokenizer_plot_and_card(pushed):
    proc, hub, out = pushed["proc"], pushed["hub"], pushed["out"]
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    files = hub.files[REPO_ID]
    assert set(files) == ADAPTER_PUSHED  # no checkpoints, logs, run_summary.json or training_args.bin
    assert all(files[name] == (out / name).read_bytes() for name in files)
    assert (out / "checkpoint-3").is_dir() and (out / "training_logs.txt").is_file()
    assert hub.repos[REPO_ID]["payload"]["visibility"] == "private"
    assert hub.lfs_files == [] and hub.unexpected_about(REPO_ID) == []
    assert hub.commits[-1]["summary"] == "Upload adapter with ethsft"
    log = (out / "training_logs.txt").read_text()
    assert f"At the end, the adapter is pushed to the Hugging Face Hub as {REPO_ID} (a private repo if it is " \
           "created then)" in log
    assert f"Pushed to {hub.url}/{REPO_ID}: adapter_model.safetensors, adapter_config.json, tokenizer.json" in log
    assert f"Pushed to {hub.url}/{REPO_ID}" in proc.stdout


def test_the_card_names_base_model_data_hyperparameters_results_and_loading(pushed):
    out, hub = pushed["out"], pushed["hub"]
    card = hub.files[REPO_ID]["README.md"].decode()
    assert card == (out / "README.md").read_text()
    summary = json.loads((out / "run_summary.json").read_text())
    assert card.startswith("---\nlibrary_name: peft\npipeline_tag: text-generation\ntags:\n- ethsft\n")
    assert "A LoRA adapter for `embedded:tiny-mistral`" in card and "## Base model\n\n`embedded:tiny-mistral`" in card
    # the data: prepare_summary.json beside the splits, and what the run counted
    prep = json.loads((pushed["root"] / "datasets" / "prepare_summary.json").read_text())
    assert "Instruction records built by `ethsft prepare` from `decoded.csv` (csv): 40 rows read, 40 kept, " \
           "0 duplicates dropped, 0 rejected." in card
    assert "".join(f"| {k} | {v} |\n" for k, v in prep["splits"].items()) in card
    assert "Actions: " + ", ".join(f"{k} {v}" for k, v in prep["actions"].items() if v) + "." in card
    assert "Records the run trained and validated on: " + ", ".join(
        f"{k} {v}" for k, v in summary["samples"].items()) + "." in card
    # the hyperparameters, and the resolved config
    for row in ("| LoRA r / alpha / dropout | 32 / 64 / 0.0 |", "| target modules | all-linear |",
                "| epochs | 2.0 (3 optimizer steps) |", "| learning rate | 0.005 (cosine, warmup 0.05) |",
                "| batch | 4 per device x 1 accumulation x 1 process = 4 per step |",
                "| max length | 256 tokens, packing off |", "| optimizer | adamw_torch, weight decay 0.0, max grad norm 1.0 |",
                "| method | QLoRA: nf4 4-bit base (double quantization on, compute float32) + LoRA |"):
        assert row in card, row
    assert "```yaml\nmodel:\n  base_model: embedded:tiny-mistral\n" in card and "  push_to_hub: true\n" in card
    # no evaluation yet: the final validation loss, and the plot
    assert f"Training: final validation loss {summary['final_eval_loss']:.4f}, mean training loss " \
           f"{summary['train_loss']:.4f} after 3 steps." in card
    assert "No `ethsft evaluate` results were pushed with this model" in card
    assert "![Training and validation loss](loss_curves.png)" in card
    # how to load it
    assert f'AutoPeftModelForCausalLM.from_pretrained("{REPO_ID}", dtype="auto", device_map="auto")' in card
    assert f"hf download {REPO_ID} --local-dir eth-intent\nethsft infer --model eth-intent '" in card
    assert "ethsft infer --base-model embedded:tiny-mistral" in card  # not a Hub id: said how to load it


def test_the_token_reaches_the_hub_and_nothing_else(pushed):
    proc, hub, out = pushed["proc"], pushed["hub"], pushed["out"]
    assert hub.authorizations and set(hub.authorizations) == {f"Bearer {TOKEN}"}
    assert TOKEN not in proc.stdout and TOKEN not in proc.stderr
    assert no_token_in(out) == []  # training_logs.txt, run_summary.json, README.md, checkpoints, ...
    assert all(TOKEN.encode() not in data for data in hub.files[REPO_ID].values())
    assert json.loads((out / "run_summary.json").read_text())["environment"]["HF_TOKEN"] == "<redacted>"


def test_push_command_adds_the_evaluate_table(pushed, hub_env, tmp_path):
    from ethsft.cli import cli
    from ethsft.evaluation.evaluate import write_results
    from ethsft.evaluation.metrics import compute_metrics

    folder = tmp_path / "run"
    shutil.copytree(pushed["out"], folder)
    refs = [{"action": "transfer", "status": "success"}, {"action": "swap", "status": "success"}]
    metrics = compute_metrics(refs, [refs[0], {"action": "transfer", "status": "success"}])
    write_results(folder / "eval-test", {**metrics, "model": str(folder), "adapter": str(folder)}, [])
    with MockHub() as hub:
        hub_env(hub.url)
        result = CliRunner().invoke(cli, ["push", "--output", str(folder)])  # repo id and privacy: from the run
    assert result.exit_code == 0, result.output
    card = hub.files[REPO_ID]["README.md"].decode()
    assert "`ethsft evaluate` on 2 held-out records (eval-test), greedy decoding:" in card
    assert "| valid JSON | 100.0% |\n| exact match | 50.0% |\n| field accuracy | 75.0% |" in card
    assert "| action | 50.0% | 1 | 2 |" in card and "| status | 100.0% | 1 | 1 |" not in card
    assert "| status | 100.0% | 2 | 2 |" in card
    assert "Training: final validation loss" in card
    assert set(hub.files[REPO_ID]) == ADAPTER_PUSHED and "eval-test/metrics.json" not in hub.files[REPO_ID]


FAILURES = {
    401: "not logged in / token invalid (HTTP 401): run `hf auth login` or set HF_TOKEN",
    403: f"no write access to {REPO_ID} (HTTP 403): use a token with write access to that user or organization "
         "(run `hf auth login` or set HF_TOKEN), or push under your own name",
    404: f"repo/namespace not found (HTTP 404): {REPO_ID}; check the user or organization name before the '/'",
    "unreachable": "network unreachable: cannot connect to the Hub at {url} (ConnectError); check the connection "
                   "(or HF_ENDPOINT)",
    "offline": "HF_HUB_OFFLINE is set, so the Hub is not contacted: unset HF_HUB_OFFLINE (and TRANSFORMERS_OFFLINE)",
}


@pytest.mark.parametrize("failure", list(FAILURES))
def test_push_failures_say_why_where_and_how_to_retry(failure, pushed, hub_env, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from ethsft.cli import cli

    folder = tmp_path / "run"
    shutil.copytree(pushed["out"], folder)
    before = tree(folder)
    with MockHub(status=failure if isinstance(failure, int) else None) as hub:
        url = closed_port_url() if failure == "unreachable" else hub.url
        hub_env(url)
        if failure == "offline":
            monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
        result = CliRunner().invoke(cli, ["push", "--output", str(folder), "--hub-model-id", REPO_ID])
    assert result.exit_code == 1
    assert result.output == (
        f"\nPushing the adapter to the Hugging Face Hub: {REPO_ID} (private if created now; 7 files)...\n"
        f"ethsft: could not push the adapter to the Hugging Face Hub: {FAILURES[failure].format(url=url)}\n"
        f"The adapter is saved in {folder}/ (nothing there was removed); push it later with: "
        f"ethsft push --output {folder} --hub-model-id {REPO_ID}\n")
    assert tree(folder) == before  # the adapter, checkpoints, logs and summary untouched
    assert hub.files == {} and TOKEN not in result.output


def test_a_failed_push_ends_a_finished_run_with_exit_1_and_everything_saved(small_dataset, tmp_path, hub_env,
                                                                                capfd):
    from ethsft.cli import cli

    out = tmp_path / "run"
    with MockHub(status=401) as hub:
        hub_env(hub.url)
        result = CliRunner().invoke(cli, [
            "train", "--config", str(REPO / "configs" / "tiny_cpu.yaml"), "--dataset", str(small_dataset),
            "--output", str(out), "--set", "training.max_steps=1", "--set", "logging.eval_steps=1",
            "--set", "logging.save_steps=1", "--push-to-hub", "--hub-model-id", REPO_ID, "--hub-public-repo"])
    captured = capfd.readouterr()
    message = (f"ethsft: could not push the adapter to the Hugging Face Hub: {FAILURES[401]}\n"
               f"The adapter is saved in {out}/ (nothing there was removed); push it later with: "
               f"ethsft push --output {out} --hub-model-id {REPO_ID} --hub-public-repo\n")
    assert result.exit_code == 1, result.output
    assert result.stderr.endswith(message)  # the last thing said, after "Model saved to"
    for name in ("adapter_model.safetensors", "adapter_config.json", "tokenizer.json", "run_summary.json",
                 "loss_curves.png", "README.md"):
        assert (out / name).is_file(), name
    log = (out / "training_logs.txt").read_text()
    assert "Model saved to:" in log and log.endswith(message)
    assert hub.repos == {} and set(hub.authorizations) == {f"Bearer {TOKEN}"}
    assert TOKEN not in result.output + captured.out + captured.err and no_token_in(out) == []


def test_merge_pushes_the_merged_model_with_a_merged_card(pushed, hub_env, tmp_path):
    from ethsft.cli import cli

    merged = tmp_path / "merged"
    with MockHub() as hub:
        hub_env(hub.url)
        result = CliRunner().invoke(cli, ["merge", "--adapter", str(pushed["out"]), "--output", str(merged),
                                          "--dtype", "float32", "--push-to-hub", "tester/eth-merged",
                                          "--hub-public-repo"])
    assert result.exit_code == 0, result.output
    files = hub.files["tester/eth-merged"]
    assert set(files) == {"config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
                          "tokenizer_config.json", "chat_template.jinja", "loss_curves.png", "README.md"}
    assert files["model.safetensors"] == (merged / "model.safetensors").read_bytes()
    assert hub.repos["tester/eth-merged"]["payload"]["visibility"] == "public"
    card = files["README.md"].decode()
    assert card.startswith("---\nlibrary_name: transformers\n") and "- merged\n" in card
    assert "A merged model: a LoRA adapter fine-tuned with ethsft (TRL SFT, QLoRA) merged into its base model " \
           "`embedded:tiny-mistral` (float32 weights)" in card
    assert "`embedded:tiny-mistral` (the adapter is merged into it)" in card
    assert "| LoRA r / alpha / dropout | 32 / 64 / 0.0 |" in card and "Training: final validation loss" in card
    assert 'AutoModelForCausalLM.from_pretrained("tester/eth-merged", dtype="auto", device_map="auto")' in card
    assert "ethsft infer --model tester/eth-merged '" in card and "AutoPeftModel" not in card
    assert TOKEN not in result.output and no_token_in(merged) == []


def test_merge_push_failure_keeps_the_merged_model(pushed, hub_env, tmp_path):
    from ethsft.cli import cli

    merged = tmp_path / "merged"
    with MockHub(status=403) as hub:
        hub_env(hub.url)
        result = CliRunner().invoke(cli, ["merge", "--adapter", str(pushed["out"]), "--output", str(merged),
                                          "--dtype", "float32", "--push-to-hub", REPO_ID])
    assert result.exit_code == 1
    assert result.output.endswith(
        f"ethsft: could not push the merged model to the Hugging Face Hub: {FAILURES[403]}\n"
        f"The merged model is saved in {merged}/ (nothing there was removed); push it later with: "
        f"ethsft push --output {merged} --hub-model-id {REPO_ID}\n")
    assert (merged / "model.safetensors").is_file() and (merged / "config.json").is_file()


def test_schema_keys_flags_and_checks(tmp_path, monkeypatch):
    from huggingface_hub import constants

    from ethsft.cli import cli
    from ethsft.config.schema import ConfigError, load_settings
    from ethsft.training.hub_push import preflight

    s = load_settings()
    assert (s.training.push_to_hub, s.training.hub_model_id, s.training.hub_private_repo) == (False, None, True)
    dry = CliRunner().invoke(cli, ["train", "--dry-run", "--push-to-hub", "--hub-model-id", "me/x",
                                   "--hub-public-repo"])
    assert dry.exit_code == 0, dry.output
    assert "  push_to_hub: true\n  hub_model_id: me/x\n  hub_private_repo: false\n" in dry.output
    from ethsft.config.hf import sft_config

    pushing = load_settings(None, {"training.push_to_hub": True, "training.output_dir": str(tmp_path / "o")})
    assert sft_config(pushing).push_to_hub is False  # transformers' own push stays off: ethsft pushes
    with pytest.raises(ConfigError, match=r"training.hub_model_id: 'me/x y' is not a Hub repo id"):
        load_settings(None, {"training.hub_model_id": "me/x y"})
    bad = CliRunner().invoke(cli, ["merge", "--adapter", str(tmp_path), "--output", str(tmp_path / "m"),
                                   "--push-to-hub", "a/b/c"])
    assert bad.exit_code == 2 and "--push-to-hub: 'a/b/c' is not a Hub repo id" in bad.output
    # no token at all: said before training, not after
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "none" / "token"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    s = load_settings(None, {"training.push_to_hub": True, "training.output_dir": str(tmp_path / "my-run")})
    assert preflight(s, tmp_path / "my-run") == [
        "At the end, the adapter is pushed to the Hugging Face Hub as my-run under the token's user (a private repo "
        "if it is created then)",
        f"Note: no Hugging Face token found (HF_TOKEN or `hf auth login`): log in before training ends, or the push "
        f"fails (the run stays in {tmp_path / 'my-run'}/)"]
