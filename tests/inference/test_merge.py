"""merge's output folder: never the adapter's folder or one around it; --overwrite replaces only an earlier merge
output; the merged folder has ordinary permissions."""

import hashlib
import os
import stat

import pytest
from click.testing import CliRunner

from ethsft.cli.evaluate import merge


def checksums(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def adapter(tiny_model_path, tmp_path_factory):
    """An untrained LoRA adapter of the tiny model, saved as a run saves one."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("adapter") / "ref"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    get_peft_model(model, LoraConfig(r=4, target_modules=["q_proj"], task_type="CAUSAL_LM")).save_pretrained(out)
    return out


def invoke(*args):
    return CliRunner().invoke(merge, ["--dtype", "float32", *args])


def refused(adapter, output, kept, message: str) -> None:
    """merge --overwrite into ``output`` fails with ``message``, and every file under ``kept`` survives as it was."""
    before = checksums(kept)
    result = invoke("--adapter", str(adapter), "--output", str(output), "--overwrite")
    assert (result.exit_code, result.output) == (1, f"Error: {message}\n")
    assert checksums(kept) == before


def test_output_holding_the_adapter_is_refused(adapter):
    parent = adapter.parent
    (parent / "notes.txt").write_text("mine\n")
    refused(adapter, parent, parent, f"--output {parent} holds the adapter {adapter}; choose a folder outside it")


def test_output_inside_the_adapter_is_refused(adapter):
    before = checksums(adapter)
    result = invoke("--adapter", str(adapter), "--output", str(adapter / "merged"))
    assert result.output == (f"Error: --output {adapter / 'merged'} is inside the adapter {adapter}; choose a "
                             "folder outside it\n")
    assert checksums(adapter) == before and not (adapter / "merged").exists()


def test_overwrite_replaces_only_an_earlier_merge(adapter, tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "config.json").write_text("{}")
    refused(adapter, mine, mine, f"--overwrite: {mine} is not an `ethsft merge` output (no ethsft_merge.json listing "
                                 "its files), so it is kept; choose another --output")

    out = tmp_path / "merged"
    assert invoke("--adapter", str(adapter), "--output", str(out)).exit_code == 0
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(out.stat().st_mode) == 0o777 & ~umask  # not drwx------
    (out / "notes.txt").write_text("mine\n")
    refused(adapter, out, out, f"--overwrite: {out} holds notes.txt, which `ethsft merge` did not write, so it is "
                               "kept; move it away or choose another --output")
    (out / "notes.txt").unlink()
    assert invoke("--adapter", str(adapter), "--output", str(out), "--overwrite").exit_code == 0
