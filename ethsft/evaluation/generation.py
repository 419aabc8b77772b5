"""Batched greedy generation for chat prompts: left padding, KV cache, stop at EOS.

Prompts are sorted by length before batching so a batch pads little, then outputs are put back in the
caller's order. Greedy decoding makes the result independent of batch composition (up to float noise).
"""

from __future__ import annotations

import contextlib
import sys
from typing import Sequence

import torch

from ethsft.data.chat_ids import chat_ids


def prompt_ids(tokenizer, messages: list[dict[str, str]]) -> list[int]:
    """Token ids of ``messages`` under the chat template, ending where the assistant's answer starts.

    The same call ``formatting.render`` makes for the prompt side in training, so inference sees exactly
    the tokens training conditioned on; control-token strings in the transaction stay text.
    """
    return chat_ids(tokenizer, messages, add_generation_prompt=True)


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
                 progress: bool = False, desc: str = "generating", stop=None, json_only: bool = False,
                 **generate_kwargs) -> list[list[int]]:
    """Greedy completions (token ids, EOS and padding cut off) of tokenized ``prompts``, in their order.

    ``json_only`` (scoring): a completion ends as soon as its score is decided (``JsonAnswerStop``).

    ``stop``: a ``stopping.SignalStop``. Once it got a signal, the running ``generate`` ends at its next token and
    ``stopping.StopRequested`` is raised before the next batch (or after the last): no partial result comes back.
    Every process must make the same number of calls with it (``stop.agreed()`` may be collective)."""
    if not prompts:
        return []
    if stop is not None:
        from transformers import StoppingCriteriaList

        generate_kwargs["stopping_criteria"] = StoppingCriteriaList(
            [*(generate_kwargs.get("stopping_criteria") or []), *stop.criteria()])
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    eos = _stop_ids(tokenizer, model)
    device = model_device(model)
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]), reverse=True)  # longest first: OOM early
    results: list[list[int] | None] = [None] * len(prompts)
    was_training = model.training
    model.eval()
    from tqdm.auto import tqdm

    bar = tqdm(total=len(prompts), desc=desc, unit="sample", disable=not progress, file=sys.stderr, leave=False)
    done = 0
    try:
        for start in range(0, len(order), batch_size):
            _stop_here(stop, done, len(prompts))
            chunk = order[start:start + batch_size]
            ids, mask = _left_pad([prompts[i] for i in chunk], pad_id, device)
            kwargs = dict(generate_kwargs)
            if json_only:
                from transformers import StoppingCriteriaList

                kwargs["stopping_criteria"] = StoppingCriteriaList(
                    [*(kwargs.get("stopping_criteria") or []), JsonAnswerStop(tokenizer, ids.shape[1])])
            with decode_attention(device):
                out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=max_new_tokens, do_sample=False,
                                     use_cache=True, pad_token_id=pad_id, eos_token_id=eos, temperature=None,
                                     top_p=None, top_k=None, **kwargs)
            if stop is None or not stop.requested():  # else this batch may have been cut short
                for i, row in zip(chunk, out[:, ids.shape[1]:].tolist()):
                    cut = next((k for k, t in enumerate(row) if t in eos), len(row))
                    results[i] = row[:cut]
                done += len(chunk)
            bar.update(len(chunk))
        _stop_here(stop, done, len(prompts))
    finally:
        bar.close()
        model.train(was_training)
    return results  # type: ignore[return-value]


class JsonAnswerStop:
    """A ``StoppingCriteria`` that ends each row as soon as its score is decided, so no row spends tokens that cannot
    change it. Scoring parses an answer strictly as one JSON object (``metrics.parse_intent``), so a row is decided

    * when its first non-blank character is not ``{`` (an untrained chat model's prose: cut after a token or two);
    * when its object has closed and a non-blank character follows (strict parsing fails on trailing text).

    A row whose object has closed ends at EOS as before (a trained model writes EOS right after ``}``). The text kept
    is a prefix of what the full budget gives and parses to the same result, so every score is unchanged.
    The scan is incremental: each call decodes only the tokens added since the last one (JSON's structural
    characters are ASCII, so a token decoded alone shows them as in context)."""

    def __init__(self, tokenizer, prompt_width: int):
        self.tokenizer, self.start = tokenizer, prompt_width
        self.rows: list[_JsonScan] = []
        self.seen = prompt_width

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        if not self.rows:
            self.rows = [_JsonScan() for _ in range(input_ids.shape[0])]
        new = input_ids[:, self.seen:].tolist()
        self.seen = input_ids.shape[1]
        for scan, tokens in zip(self.rows, new):
            if not scan.decided:
                scan.feed(self.tokenizer.decode(tokens, skip_special_tokens=True))
        return torch.tensor([scan.decided for scan in self.rows], dtype=torch.bool, device=input_ids.device)


class _JsonScan:
    """How far one answer is through its JSON object: just enough lexing (strings, escapes, nesting) to see where
    the outermost object closes."""

    __slots__ = ("opened", "depth", "in_string", "escaped", "closed", "decided")

    def __init__(self):
        self.opened = self.in_string = self.escaped = self.closed = self.decided = False
        self.depth = 0

    def feed(self, text: str) -> None:
        for ch in text:
            if self.closed or not self.opened:
                if ch.isspace():
                    continue
                if self.closed or ch != "{":
                    self.decided = True
                    return
                self.opened, self.depth = True, 1
            elif self.in_string:
                if self.escaped:
                    self.escaped = False
                elif ch == "\\":
                    self.escaped = True
                elif ch == '"':
                    self.in_string = False
            elif ch == '"':
                self.in_string = True
            elif ch in "{[":
                self.depth += 1
            elif ch in "}]":
                self.depth -= 1
                self.closed = self.depth == 0


def _stop_here(stop, done: int, total: int) -> None:
    if stop is not None and stop.agreed():
        from ethsft.evaluation.stopping import StopRequested

        raise StopRequested(done, total)


def generate_texts(model, tokenizer, messages: Sequence[list[dict[str, str]]], max_new_tokens: int,
                   batch_size: int = 16, progress: bool = False, limit: tuple[int, str] | None = None,
                   **kwargs) -> list[str]:
    """Greedy answers to chat ``messages`` (one conversation per item), decoded without special tokens. ``limit``:
    (data.max_length, data.overlong) of the run the model comes from: a longer prompt is cut or refused as training
    would (``records.fit_prompt``)."""
    prompts = [prompt_ids(tokenizer, m) for m in messages]
    if limit is not None:
        from ethsft.config.schema import notice
        from ethsft.data.records import fit_prompt

        prompts = [fit_prompt(p, tokenizer, *limit, f"input {i}", notice) for i, p in enumerate(prompts, start=1)]
    outputs = generate_ids(model, tokenizer, prompts, max_new_tokens, batch_size, progress, **kwargs)
    return [tokenizer.decode(o, skip_special_tokens=True).strip() for o in outputs]


def answer_budget(tokenizer, references: Sequence[str], slack: float = 0.25, minimum: int = 16) -> int:
    """max_new_tokens from the longest reference answer: its length + EOS + some slack for longer spellings."""
    longest = max((len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in references), default=0)
    return max(minimum, int(longest * (1 + slack)) + 1)
