"""merge_for_generation: the adapter folded into plain weights (4-bit bases dequantised) computes what base + LoRA
computed, on the tiny model."""

from __future__ import annotations

import pytest
import torch

from conftest import random_lora_adapter


@pytest.fixture(scope="module")
def adapter(tiny_model_path, tmp_path_factory):
    return random_lora_adapter(tiny_model_path, tmp_path_factory.mktemp("adapter"))


def logits(model, ids):
    with torch.no_grad():
        return model(input_ids=ids).logits.float()


@pytest.mark.parametrize("load_in_4bit", [False, True])
def test_merged_model_computes_what_base_plus_adapter_computed(adapter, load_in_4bit):
    from peft.tuners.lora import LoraLayer

    from ethsft.inference.loading import load_for_inference

    ids = torch.tensor([[1, 415, 2936, 9060, 285, 1142, 28705, 28734, 28744]])
    apart = load_for_inference(adapter, load_in_4bit=load_in_4bit, dtype=torch.float32)
    merged = load_for_inference(adapter, load_in_4bit=load_in_4bit, dtype=torch.float32, merge=True)
    base = load_for_inference("embedded:tiny-mistral", dtype=torch.float32)
    assert type(merged.model).__name__ == "MistralForCausalLM"
    kinds = {type(m).__name__ for m in merged.model.modules()}
    assert not any(isinstance(m, LoraLayer) for m in merged.model.modules()) and "Linear4bit" not in kinds
    assert all(p.dtype == torch.float32 for p in merged.model.parameters())
    expected, got = logits(apart.model, ids), logits(merged.model, ids)
    effect = (logits(base.model, ids) - expected).abs().max()  # what the adapter changes
    error = (got - expected).abs().max()
    # fp32 merges to rounding; bitsandbytes' CPU 4-bit kernel computes in bf16, the merged model in fp32
    assert error < (0.02 * effect if load_in_4bit else 1e-4), (error, effect)
    assert torch.equal(got.argmax(-1), expected.argmax(-1))


def test_a_model_without_adapter_or_4bit_comes_back_as_it_is(tiny_model_path):
    from transformers import AutoModelForCausalLM

    from ethsft.inference.merge import merge_for_generation

    model = AutoModelForCausalLM.from_pretrained(tiny_model_path, dtype=torch.float32)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert merge_for_generation(model) is model
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
