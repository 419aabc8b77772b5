"""Batched greedy generation for chat prompts: left padding, KV cache, stop at EOS.

Prompts are sorted by length before batching so a batch pads little, then outputs are put back in the
caller's order. Greedy decoding makes the result independent of batch composition (up to float noise).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Sequence

import torch


def prompt_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of ``messages`` under the chat template, ending where the assistant's answer starts.

    The same call ``formatting.render`` makes for the prompt side in training, so inference sees exactly
    the tokens training conditioned on.
    """
    encoded = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True)
    if hasattr(encoded, "keys"):  # transformers 5 returns a BatchEncoding
        encoded = encoded["input_ids"]
    return list(encoded)


def model_device(model) -> torch.device:
    try:
        return next(p.device for p in model.parameters() if p.device.type != "meta")
    except StopIteration:
        return torch.device("cpu")


def _left_pad(rows: Sequence[list[int]], pad_id: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row):] = 1
    return ids.to(device), mask.to(device)


def _stop_ids(tokenizer, model) -> list[int]:
    ids = {tokenizer.eos_token_id}
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids.update(configured if isinstance(configured, list) else [configured])
    return sorted(i for i in ids if i is not None)


def decode_attention(device: torch.device):
    """Keep SDPA off its cuDNN backend while decoding.

    cuDNN attention builds an execution plan for every new shape, and decoding grows the KV length by one each
    step: measured on an H100 (torch 2.11), every step re-planned, ~50 ms per step whatever the model size.
    Flash / memory-efficient attention have no per-shape cost.
    """
    if device.type != "cuda":
        return contextlib.nullcontext()
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.FLASH_ATTENTION, SDPBackend.EFFICIENT_ATTENTION, SDPBackend.MATH])


@torch.no_grad()  # not inference_mode: tensors it caches (rotary tables) may be reused by training afterwards
def generate_ids(model, tokenizer, prompts: Sequence[list[int]], max_new_tokens: int, batch_size: int = 16,
                 progress: bool = False, desc: str = "generating", **generate_kwargs) -> list[list[int]]:
    """Greedy completions (token ids, EOS and padding cut off) of tokenized ``prompts``, in their order."""
    if not prompts:
        return []
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    stop = _stop_ids(tokenizer, model)
    device = model_device(model)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)  # longest first: OOM early
    results: list[list[int] | None] = [None] * len(prompts)
    was_training = model.training
    model.eval()
    from tqdm.auto import tqdm

    bar = tqdm(total=len(prompts), desc=desc, unit="sample", disable=not progress, file=sys.stderr, leave=False)
    try:
        for start in range(0, len(order), batch_size):
            chunk = order[start:start + batch_size]
            ids, mask = _left_pad([prompts[i] for i in chunk], pad_id, device)
            with decode_attention(device):
                out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                     use_cache=True, pad_token_id=pad_id, eos_token_id=stop, temperature=None,
                                     top_p=None, top_k=None, **generate_kwargs)
            for i, row in zip(chunk, out[:, ids.shape[1]:].tolist()):
                cut = next((k for k, t in enumerate(row) if t in stop), len(row))
                results[i] = row[:cut]
            bar.update(len(chunk))
    finally:
        bar.close()
        model.train(was_training)
    return results  # type: ignore[return-value]


def generate_texts(model, tokenizer, messages: Sequence[list[dict[str, str]]], max_new_tokens: int,
                   batch_size: int = 16, progress: bool = False, **kwargs) -> list[str]:
    """Greedy answers to chat ``messages`` (one conversation per item), decoded without special tokens."""
    prompts = [prompt_ids(tokenizer, m) for m in messages]
    outputs = generate_ids(model, tokenizer, prompts, max_new_tokens, batch_size, progress, **kwargs)
    return [tokenizer.decode(o, skip_special_tokens=True).strip() for o in outputs]


def answer_budget(tokenizer, references: Sequence[str], slack: float = 0.25, minimum: int = 16) -> int:
    """max_new_tokens from the longest reference answer: its length + EOS + some slack for longer spellings."""
    longest = max((len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in references), default=0)
    return max(minimum, int(longest * (1 + slack)) + 1)
