"""Formatters: instruction records -> TRL's dataset formats, and ``render``: any TRL row as training sees it.

A record is ``{"instruction": str, "input": str, "output": str}``. These functions are public API for other TRL
projects. Each one, handed to TRL's ``SFTTrainer`` with its default ``SFTConfig()``, trains exactly the tokens
``render(record, tokenizer)`` marks (the answer, its end-of-turn token and any template layout after it):

- ``to_prompt_completion``: conversational prompt/completion; TRL's default completion-only loss.
- ``to_ids``: ``input_ids`` + ``labels``, pre-tokenized; TRL uses the labels as they are.
- ``to_messages``: conversational language modeling; needs ``SFTConfig(assistant_only_loss=True)`` and a chat
  template with ``{% generation %}`` markers: ``tokenizer.chat_template = training_template(tokenizer)``.
- ``to_text``: TRL's language-modeling ``text`` form; TRL trains on EVERY token of it, prompt included
  (``render({"text": to_text(record, tokenizer)}, tokenizer)`` shows so).

Each turn is stripped of surrounding whitespace: the HF tokenizer and mistral-common split boundary
spaces differently otherwise, and the rendered ids must equal mistral-common's reference.

Transaction text is untrusted: a literal ``</s>`` or ``<|im_end|>`` in it must stay text. ``render`` and
``to_ids`` guarantee that for conversational rows (``ethsft.data.chat_ids``); the text forms
(``to_prompt_completion``, ``to_messages``, ``to_text``) leave tokenization to TRL, which reads such strings as
control tokens. Hand TRL ``to_ids`` rows when the data may hold them.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any

from ethsft.data.chat_ids import chat_ids, chat_text_and_ids

REQUIRED_FIELDS = ("instruction", "input", "output")
# TRL's dataset formats and the keys that make each, in the order a row's keys are matched against them
FORMATS = {"alpaca": REQUIRED_FIELDS, "prompt_completion": ("prompt", "completion"), "messages": ("messages",),
           "text": ("text",)}
FORMATS_TEXT = "instruction/input/output, prompt/completion, messages or text"
TRAINING_TEMPLATES = {"mistral_instruct_training": "Mistral Instruct", "chatml_training": "ChatML (SmolLM2)"}


def load_template(name: str = "mistral_instruct") -> str:
    """The packaged Jinja chat template ``name``: ``mistral_instruct``, ``mistral_instruct_training`` or
    ``chatml_training``."""
    return resources.files("ethsft.data.templates").joinpath(f"{name}.jinja").read_text(encoding="utf-8")


_PROBES = (  # conversations on which a training template must render exactly as the tokenizer's own template
    [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"},
     {"role": "assistant", "content": "d"}],
    [{"role": "system", "content": "s"}, {"role": "user", "content": " a\n"}, {"role": "assistant", "content": "b "}],
)


def training_template(tokenizer) -> str:
    """The packaged training variant of ``tokenizer``'s chat template: the same text, with each assistant turn
    (answer, end-of-turn token and the layout after it) inside ``{% generation %}`` so TRL's
    ``assistant_only_loss=True`` trains exactly ``render()``'s labels::

        tokenizer.chat_template = training_template(tokenizer)

    Raises ValueError when no packaged variant renders as the tokenizer's template does."""
    from jinja2 import TemplateError

    own = tokenizer.chat_template
    if not own:
        raise ValueError("training_template: the tokenizer has no chat template")

    def same(candidate) -> bool:
        for messages in _PROBES:
            for n in range(1, len(messages) + 1):
                for prompt in (False, True):
                    texts = {tokenizer.apply_chat_template(messages[:n], chat_template=template, tokenize=False,
                                                           add_generation_prompt=prompt)
                             for template in (own, candidate)}
                    if len(texts) > 1:
                        return False
        return True

    for name in TRAINING_TEMPLATES:
        candidate = load_template(name)
        try:
            if same(candidate):
                return candidate
        except (TemplateError, TypeError, ValueError):  # rejecting a probe conversation: not this template
            continue
    known = ", ".join(f"{label} ({name})" for name, label in TRAINING_TEMPLATES.items())
    raise ValueError(f"training_template: the tokenizer's chat template renders like none ethsft ships ({known}); "
                     "wrap each assistant turn of your template, from after the generation prompt through the "
                     "end-of-turn, in {% generation %} ... {% endgeneration %}, or see TRL's "
                     "trl.chat_template_utils.get_training_chat_template")


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
    """TRL's conversational prompt/completion form: TRL's default ``SFTConfig()`` puts the loss on the completion
    only (the answer, its end-of-turn token and the template's layout after it)."""
    return {
        "prompt": prompt_messages(record, system),
        "completion": [{"role": "assistant", "content": str(record["output"]).strip()}],
    }


def to_messages(record: dict[str, Any], system: str | None = None) -> dict[str, list[dict[str, str]]]:
    """TRL's conversational language-modeling form (``messages``). Train it with
    ``SFTConfig(assistant_only_loss=True)`` and ``tokenizer.chat_template = training_template(tokenizer)``;
    without ``assistant_only_loss`` TRL trains every token."""
    pc = to_prompt_completion(record, system)
    return {"messages": pc["prompt"] + pc["completion"]}


def to_text(record: dict[str, Any], tokenizer, system: str | None = None) -> str:
    """A ``formatting_func``-style renderer: the whole exchange as one string in the chat template.

    This is TRL's language-modeling ``text`` form: TRL trains on EVERY token of it, prompt included, and appends
    EOS when the text does not end with it (a ChatML text ends with ``<|im_end|>\n``, so it gets a second
    ``<|im_end|>``). ``render(to_text(record, tokenizer), tokenizer)`` shows those labels; use
    ``to_prompt_completion``, ``to_ids`` or ``to_messages`` for loss on the answer only.
    The leading BOS is left out because the tokenizer adds it when it tokenizes plain text.
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


def row_format(keys) -> str | None:
    """The TRL dataset format a row's keys (or a dataset's columns) make: ``alpaca`` (instruction, input, output),
    ``prompt_completion``, ``messages`` or ``text``, matched in that order; None when none matches."""
    keys = set(keys)
    return next((name for name, needed in FORMATS.items() if keys.issuperset(needed)), None)


def render(row: dict[str, Any] | str, tokenizer, system: str | None = None) -> RenderedRecord:
    """Show ``row`` as training sees it: its ids and its labels (-100 where no loss falls), as TRL's
    ``SFTTrainer`` makes them with its default ``SFTConfig()`` (``assistant_only_loss=True`` for ``messages``).

    ``row`` is any of TRL's formats, told apart by its keys (``row_format``):

    - a record (instruction, input, output): as ``to_prompt_completion(row, system)``;
    - conversational prompt/completion: the prompt is rendered with ``add_generation_prompt=True``, then the whole
      exchange; every token past their common prefix is the completion and is trained: the answer, its
      end-of-turn token and the template's layout after it (ChatML's newline after ``<|im_end|>``);
    - ``messages``: every assistant turn is trained the same way (what follows the conversation up to it, rendered
      with the generation prompt), nothing else;
    - plain prompt/completion strings: the completion and the EOS TRL appends to it;
    - ``text`` (or a plain string): every token, with the BOS the tokenizer adds and the EOS TRL appends.

    ``system`` (the conversational forms only) is prepended as a system message where the row has none.
    Conversational rows keep control-token strings in their content as text (``ethsft.data.chat_ids``); plain
    strings are tokenized as TRL tokenizes them.
    """
    from trl.data_utils import is_conversational  # TRL's own test of a row's shape (imported here: `import ethsft` stays light)

    if isinstance(row, str):
        row = {"text": row}
    kind = row_format(row)
    if kind == "alpaca":
        row, kind = to_prompt_completion(row, system), "prompt_completion"
    if kind == "prompt_completion" and is_conversational(row):
        return _render_completion(tokenizer, _with_system(row["prompt"], system), list(row["completion"]))
    if kind == "prompt_completion":
        return _render_plain(tokenizer, str(row["prompt"]), str(row["completion"]))
    if kind == "messages":
        return _render_messages(tokenizer, _with_system(row["messages"], system))
    if kind == "text":
        return _render_plain(tokenizer, None, str(row["text"]))
    raise ValueError(f"render: a row's keys ({', '.join(map(str, row)) or 'none'}) make none of TRL's dataset "
                     f"formats ({FORMATS_TEXT})")


def to_ids(record: dict[str, Any], tokenizer, system: str | None = None) -> dict[str, list[int]]:
    """TRL's pre-tokenized form: ``input_ids`` and ``labels`` (-100 on the prompt), exactly ``render()``'s.

    SFTTrainer uses a ``labels`` column as it is, whatever its loss settings, and its collator pads it with -100.
    Control-token strings in the record stay text."""
    rendered = render(record, tokenizer, system)
    return {"input_ids": rendered.input_ids, "labels": rendered.labels}


def _with_system(messages, system: str | None) -> list[dict[str, str]]:
    messages = list(messages)
    if system and system.strip() and not (messages and messages[0].get("role") == "system"):
        messages.insert(0, {"role": "system", "content": system.strip()})
    return messages


def _render_completion(tokenizer, prompt: list[dict], completion: list[dict]) -> RenderedRecord:
    # each side rendered once and tokenized as apply_chat_template(tokenize=True) would (no special tokens added),
    # except that control-token strings inside the messages stay text (ethsft.data.chat_ids)
    from trl.data_utils import common_prefix_length  # where TRL's own tokenization starts the completion

    prompt_ids = chat_ids(tokenizer, prompt, add_generation_prompt=True)
    text, full_ids = chat_text_and_ids(tokenizer, prompt + completion)
    n = common_prefix_length(prompt_ids, full_ids)
    return RenderedRecord(text=text, input_ids=full_ids, labels=[-100] * n + full_ids[n:])


def _render_messages(tokenizer, messages: list[dict]) -> RenderedRecord:
    from trl.data_utils import common_prefix_length

    text, ids = chat_text_and_ids(tokenizer, messages)
    labels = [-100] * len(ids)
    for k, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        before = chat_ids(tokenizer, messages[:k], add_generation_prompt=True)
        through = chat_ids(tokenizer, messages[:k + 1])
        if through != ids[:len(through)]:
            raise ValueError("render: the chat template renders a conversation's first turns differently when more "
                             "follow; its assistant turns cannot be told apart")
        start = common_prefix_length(before, through)
        labels[start:len(through)] = ids[start:len(through)]
    return RenderedRecord(text=text, input_ids=ids, labels=labels)


def _render_plain(tokenizer, prompt: str | None, completion: str) -> RenderedRecord:
    """TRL's non-conversational rows: EOS appended unless there, tokenized with the tokenizer's special tokens."""
    from trl.data_utils import common_prefix_length

    eos = tokenizer.eos_token or ""
    if not completion.endswith(eos):
        completion += eos
    text = (prompt or "") + completion
    ids = tokenizer(text=text).input_ids
    n = common_prefix_length(tokenizer(text=prompt).input_ids, ids) if prompt is not None else 0
    return RenderedRecord(text=text, input_ids=ids, labels=[-100] * n + ids[n:])
