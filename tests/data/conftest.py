"""A tiny ChatML model beside the session's ChatML tokenizer (tests/conftest.py's ``chatml_tokenizer``)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def chatml_model_path(chatml_tokenizer, tmp_path_factory):
    """A 2-layer Llama with random weights and the ChatML test tokenizer's vocabulary, saved with that tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = chatml_tokenizer
    config = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                         pad_token_id=tok.pad_token_id, tie_word_embeddings=False)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny-chatml")
    LlamaForCausalLM(config).save_pretrained(path)
    tok.save_pretrained(path)
    return path
