"""ethsft doctor on this CPU-only machine: the checklist, the exit code, the config verdict, secrets kept."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from conftest import REPO
from ethsft.planning import doctor as doc
from ethsft.cli.ops import doctor as doctor_cmd

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="asserts the CPU-only checklist")


@pytest.fixture
def fast(monkeypatch):
    """DeepSpeed's op probes take seconds: stub them where a test is about something else."""
    monkeypatch.setattr(doc, "check_deepspeed", lambda: doc.Check("ok", "DeepSpeed", "stub"))


def invoke(*args):
    return CliRunner().invoke(doctor_cmd, list(args))


def test_cpu_machine_checklist_and_exit_code_zero(monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    result = invoke()
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0] == "ethsft doctor"
    assert lines[1].startswith("  ✓ Python: 3.")
    assert lines[2].startswith("  ✓ torch: ") and "CPU build" in lines[2]
    assert lines[3] == ("  ! CUDA: no GPU: this is a CPU-only machine. The CPU presets (configs/tiny_cpu.yaml, "
                        "configs/demo_cpu.yaml: `ethsft demo`), --dry-run, estimate and tests work here; a 7B QLoRA "
                        "run needs an NVIDIA GPU "
                        "(>= 8 GB with configs/8gb.yaml)")
    assert lines[4].startswith("  ✓ bitsandbytes: ") and "NF4 double-quant matmul + backward on cpu (float32) correct" \
        in lines[4]
    assert any(line.startswith("  ! flash-attn: not installed (optional)") for line in lines)
    assert any(line.startswith("  ✓ DeepSpeed: ") and "cpu_adam compatible" in line for line in lines)
    assert any(line.startswith("  ✓ Disk: ") and "GB free at" in line for line in lines)
    assert "  ! Hugging Face token: not set (only gated models such as Llama-2 need one: `hf auth login` or HF_TOKEN)" \
        in lines
    assert any(line.startswith("  ✓ Tracking: installed: tensorboard") for line in lines)
    assert lines[-1].startswith("✓ ready for CPU runs (tiny preset); no GPU for 7B training (")


def test_7b_config_on_cpu_is_a_failure_with_the_reason(fast):
    result = invoke("--config", str(REPO / "configs" / "training_config.yaml"))
    assert result.exit_code == 1
    config = [line for line in result.output.splitlines() if "Config:" in line]
    assert config == [f"  ✗ Config: {REPO / 'configs' / 'training_config.yaml'}: mistralai/Mistral-7B-Instruct-v0.2 "
                      "(7.24B), LoRA r 16, 1 x 2048 tokens (batch x max_length, worst case), checkpointing on: "
                      "predicted peak ~11.7 GB: needs a CUDA GPU, and this machine has none; fits e.g. rtx3060 (12 GB)"]
    assert result.output.splitlines()[-1].startswith("✗ 1 problem to fix (Config)")


def test_tiny_config_trains_on_cpu(fast):
    result = invoke("--config", str(REPO / "configs" / "tiny_cpu.yaml"))
    assert result.exit_code == 0, result.output
    assert any(line.startswith("  ✓ Config: ") and line.endswith("trains on this CPU (float32)")
               for line in result.output.splitlines())


def test_broken_required_check_exits_non_zero(fast, monkeypatch):
    monkeypatch.setattr(doc, "check_bitsandbytes", lambda: doc.Check("fail", "bitsandbytes", "4-bit matmul failed"))
    result = invoke()
    assert result.exit_code == 1
    assert "  ✗ bitsandbytes: 4-bit matmul failed" in result.output.splitlines()
    assert result.output.splitlines()[-1].startswith("✗ 1 problem to fix (bitsandbytes)")


def test_hf_token_is_never_printed(fast, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_SECRETsecretSECRET123")
    result = invoke()
    assert "hf_SECRET" not in result.output
    assert "  ✓ Hugging Face token: set (HF_TOKEN environment variable; not shown)" in result.output.splitlines()


def test_gated_model_without_token_is_flagged(monkeypatch):
    from ethsft.config.schema import load_settings

    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    monkeypatch.setattr("huggingface_hub.get_token", lambda: None)
    check = doc.check_hf_token(load_settings(REPO / "configs" / "24gb.yaml"))
    assert check.status == "warn" and "meta-llama/Llama-2-13b-chat-hf is gated" in check.detail


def test_missing_trackers_are_dropped_with_a_notice_not_an_error():
    kept, notes = doc.usable_report_to(["tensorboard", "wandb", "mlflow"])
    assert kept == ["tensorboard"]
    assert notes == ["logging.report_to: wandb is not installed; training without it (pip install 'ethsft[wandb]' "
                     "to track with it)",
                     "logging.report_to: mlflow is not installed; training without it (pip install 'ethsft[mlflow]' "
                     "to track with it)"]
    assert doc.usable_report_to("none") == ([], [])


def test_bad_config_is_a_usage_error(fast, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("lora:\n  rank: 8\n")
    result = invoke("--config", str(bad))
    assert result.exit_code == 2 and "unknown key 'rank' in section 'lora'" in result.output
