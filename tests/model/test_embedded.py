"""Embedded random-weight models: what each shape builds, and that a changed recipe never loads a stale build."""

from __future__ import annotations

import json
from pathlib import Path

from ethsft.model import embedded


def test_cache_folder_follows_the_recipe(monkeypatch):
    name = embedded.cache_name("small-mistral")
    assert name.startswith("small-mistral-") and len(name) == len("small-mistral-") + 8
    assert embedded.cache_name("small-mistral") == name  # stable
    monkeypatch.setitem(embedded.HEAD_INIT_STD, "small-mistral", 0.2)
    assert embedded.cache_name("small-mistral") != name
    monkeypatch.setattr(embedded, "BUILD_VERSION", embedded.BUILD_VERSION + 1)
    assert len({embedded.cache_name(s) for s in embedded.SHAPES}) == len(embedded.SHAPES)


def test_demo_model_shape_and_head():
    import torch
    from safetensors.torch import load_file

    path = Path(embedded.resolve("embedded:small-mistral"))
    assert path.name == embedded.cache_name("small-mistral")
    config = json.loads((path / "config.json").read_text())
    assert (config["num_hidden_layers"], config["hidden_size"], config["num_attention_heads"],
            config["num_key_value_heads"]) == (4, 64, 4, 4)
    weights = load_file(next(path.glob("*.safetensors")))
    head = weights["lm_head.weight"].float()
    assert head.shape == (config["vocab_size"], 64)
    assert abs(head.std().item() - 0.1) < 0.005
    assert abs(weights["model.embed_tokens.weight"].float().std().item() - 0.02) < 0.002
    assert torch.isfinite(head).all()
