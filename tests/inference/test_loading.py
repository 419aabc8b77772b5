"""Loading a trained adapter for generation (ethsft/inference/loading.py): an adapter trained on another base fails
at evaluate and merge time, naming both models."""

from __future__ import annotations

import json
import shutil

import pytest


@pytest.fixture(scope="module")
def foreign_adapter(tmp_path_factory):
    """A LoRA adapter trained on another base (hidden size 32; the tiny model has 64)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, MistralConfig

    root = tmp_path_factory.mktemp("foreign")
    other = root / "other-base"
    config = MistralConfig(vocab_size=32000, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                           num_attention_heads=4, num_key_value_heads=2)
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(config).save_pretrained(other)
    peft_model = get_peft_model(AutoModelForCausalLM.from_pretrained(other),
                                LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj"], task_type="CAUSAL_LM"))
    peft_model.save_pretrained(root / "adapter")
    return root / "adapter", other


def test_adapter_from_another_base_at_evaluate_and_merge_time(foreign_adapter, tiny_model_path, tmp_path):
    from ethsft.inference.loading import ModelLoadError, load_for_inference
    from ethsft.inference.merge import merge_adapter

    adapter, other = foreign_adapter
    named = (f"adapter {adapter} was trained on base model {other}, but --base-model is {tiny_model_path}; leave "
             "--base-model out to use the adapter's own base, or pass the same model")
    with pytest.raises(ModelLoadError) as e:
        load_for_inference(adapter, base_model=tiny_model_path)
    assert str(e.value) == named
    with pytest.raises(ModelLoadError) as e:
        merge_adapter(adapter, tmp_path / "merged", base_model=tiny_model_path)
    assert str(e.value) == named

    relabelled = tmp_path / "relabelled"  # its config claims the tiny base: the shapes still give it away
    shutil.copytree(adapter, relabelled)
    cfg = json.loads((relabelled / "adapter_config.json").read_text())
    (relabelled / "adapter_config.json").write_text(json.dumps({**cfg, "base_model_name_or_path": tiny_model_path}))
    misfit = (f"adapter {relabelled} (trained on {tiny_model_path}) does not fit base model {tiny_model_path}: "
              "model.layers.0.self_attn.q_proj has input size 64 in the base, 32 in the adapter "
              "(base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight [8, 32])")
    with pytest.raises(ModelLoadError) as e:
        load_for_inference(relabelled)
    assert str(e.value) == misfit
    with pytest.raises(ModelLoadError) as e:
        merge_adapter(relabelled, tmp_path / "merged2")
    assert str(e.value) == misfit
    assert not (tmp_path / "merged2").exists()
