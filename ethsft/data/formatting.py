"""Formatters: instruction records -> what TRL's SFTTrainer and the Mistral chat template consume.

A record is ``{"instruction": str, "input": str, "output": str}``. These functions are public API:
other TRL projects import them directly::

    from ethsft import to_prompt_completion
    train = dataset.map(to_prompt_completion, remove_columns=dataset.column_names)
    SFTTrainer(model, args=SFTConfig(...), train_dataset=train, processing_class=tokenizer)

Each turn is stripped of surrounding whitespace: the HF tokenizer and mistral-common split boundary
spaces differently otherwise, and the rendered ids must equal mistral-common's reference.

Transaction text is untrusted: a literal ``</s>`` or ``<|im_end|>`` in it must stay text. ``render`` and
``to_ids`` guarantee that (``ethsft.data.chat_ids``); the text forms (``to_prompt_completion``, ``to_messages``,
``to_text``) leave tokenization to TRL, which reads such strings as control tokens. Hand TRL ``to_ids`` rows
(``input_ids`` + ``completion_mask``, trained as they are) when the data may hold them::

    train = dataset.map(lambda r: to_ids(r, tokenizer), remove_columns=dataset.column_names)
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

from ethsft.data.chat_ids import chat_ids, chat_text_and_ids

REQUIRED_FIELDS = ("instruction", "input", "output")


def load_template(name: str = "mistral_instruct") -> str:
    """The packaged Jinja chat template ``name`` (``mistral_instruct`` or ``mistral_instruct_training``)."""
    return resources.files("ethsft.data.templates").joinpath(f"{name}.jinja").read_text(encoding="utf-8")


def user_text(record: dict[str, Any]) -> str:
    """The user turn: the instruction, a blank line, then the input (when there is one)."""
    instruction = str(record["instruction"]).strip()
    data = str(record.get("input") or "").strip()
    return f"{instruction}\n\n{data}" if data else instruction


def prompt_messages(record: dict[str, Any], system: str | None = None) -> list[dict[str, str]]:
    """The prompt side as chat messages: an optional system message, then the user turn."""
    messages = [{"role": "system", "content": system.strip()}] if system and system.strip() else []
    messages.append({"role": "user", "content": user_text(record)})
    return messages


def to_prompt_completion(record: dict[str, Any], system: str | None = None) -> dict[str, list[dict[str, str]]]:
    """TRL's conversational prompt/completion form: loss falls on the completion (answer + EOS) only."""
    return {
        "prompt": prompt_messages(record, system),
        "completion": [{"role": "assistant", "content": str(record["output"]).strip()}],
    }


def to_messages(record: dict[str, Any], system: str | None = None) -> dict[str, list[dict[str, str]]]:
    """TRL's conversational language-modeling form (``messages``), for ``assistant_only_loss`` training."""
    pc = to_prompt_completion(record, system)
    return {"messages": pc["prompt"] + pc["completion"]}


def to_text(record: dict[str, Any], tokenizer, system: str | None = None) -> str:
    """A ``formatting_func``-style renderer: the whole exchange as one string in the chat template.

    The leading BOS is left out because the tokenizer adds it when it tokenizes plain text; TRL's
    language-modeling path trains on every token of this text, prompt included.
    """
    text = tokenizer.apply_chat_template(to_messages(record, system)["messages"], tokenize=False)
    bos = tokenizer.bos_token or ""
    adds_bos = bos and tokenizer("x").input_ids[:1] == [tokenizer.bos_token_id]
    if adds_bos and text.startswith(bos):
        text = text[len(bos):]
    return text


@dataclass
class RenderedRecord:
    """A record exactly as the model sees it in training."""

    text: str
    input_ids: list[int]
    labels: list[int]  # -100 where no loss falls

    @property
    def loss_mask(self) -> list[bool]:
        return [label != -100 for label in self.labels]

    def pretty(self, tokenizer) -> str:
        """One line per token: id, piece, and whether the loss falls on it."""
        rows = [f"{self.text!r}", "", f"{'idx':>5} {'id':>6}  loss  piece"]
        for i, (tok, trained) in enumerate(zip(self.input_ids, self.loss_mask)):
            piece = tokenizer.convert_ids_to_tokens(tok)
            rows.append(f"{i:>5} {tok:>6}  {'  x ' if trained else '    '}  {piece!r}")
        return "\n".join(rows)


def render(record: dict[str, Any], tokenizer, system: str | None = None) -> RenderedRecord:
    """Show ``record`` as training sees it: the same prompt/completion split TRL makes.

    The prompt is rendered with ``add_generation_prompt=True`` and the full exchange after it; the
    tokens past the common prefix are the completion, the only ones with labels.
    """
    pc = to_prompt_completion(record, system)
    # each side rendered once and tokenized as apply_chat_template(tokenize=True) would (no special tokens added),
    # except that control-token strings inside the record stay text (ethsft.data.chat_ids)
    prompt_ids = chat_ids(tokenizer, pc["prompt"], add_generation_prompt=True)
    text, full_ids = chat_text_and_ids(tokenizer, pc["prompt"] + pc["completion"])
    n = 0
    while n < min(len(prompt_ids), len(full_ids)) and prompt_ids[n] == full_ids[n]:
        n += 1
    end = answer_end(full_ids, n, tokenizer.eos_token_id)
    labels = [-100] * n + full_ids[n:end] + [-100] * (len(full_ids) - end)
    return RenderedRecord(text=text, input_ids=full_ids, labels=labels)


def to_ids(record: dict[str, Any], tokenizer, system: str | None = None) -> dict[str, list[int]]:
    """TRL's pre-tokenized form: ``input_ids`` and ``completion_mask`` (1 on the answer and its end-of-turn token),
    with control-token strings in the record kept as text."""
    rendered = render(record, tokenizer, system)
    return {"input_ids": rendered.input_ids, "completion_mask": [int(m) for m in rendered.loss_mask]}


def answer_end(ids: list[int], start: int, end_of_turn: int | None) -> int:
    """Where the loss stops: just past the completion's last end-of-turn token.

    Mistral's template ends the answer with ``</s>``; ChatML templates (SmolLM2, Qwen) write ``<|im_end|>`` and
    then a newline. That newline is template layout, not something the model must generate (generation stops
    at ``<|im_end|>``), so no loss falls on it.
    """
    for i in range(len(ids) - 1, start - 1, -1):
        if ids[i] == end_of_turn:
            return i + 1
    return len(ids)
