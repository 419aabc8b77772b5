"""Intents for transactions (``ethsft infer``): each record's prompt rendered as training rendered it, generated
greedily in batches, and the answer parsed as an intent. Loading the model is ``ethsft.inference.loading``'s."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Iterable

from ethsft.data.formatting import prompt_messages
from ethsft.evaluation.generation import generate_texts
from ethsft.evaluation.metrics import parse_intent

if TYPE_CHECKING:
    from ethsft.inference.loading import LoadedModel


def predict(loaded: LoadedModel, records: Iterable[dict], batch_size: int = 16, max_new_tokens: int = 384,
            system_prompt: str | None = None, progress: bool = False, stop=None) -> list[dict]:
    """``{"input", "intent", "raw"}`` per record: ``intent`` is the parsed JSON object, or None when ``raw``
    is not one. ``max_new_tokens`` bounds an answer (Mistral tokens; the longest intents take ~250).
    ``stop`` (an ``evaluation.stopping.SignalStop``): installed while generating; a first SIGTERM/SIGINT then
    raises ``StopRequested`` within a generate step, and nothing is returned."""
    records = list(records)
    system = system_prompt if system_prompt is not None else loaded.system_prompt
    with stop if stop is not None else contextlib.nullcontext():
        texts = generate_texts(loaded.model, loaded.tokenizer, [prompt_messages(r, system) for r in records],
                               max_new_tokens, batch_size, progress, limit=loaded.limit, stop=stop)
    return [{"input": r["input"], "intent": parse_intent(t), "raw": t} for r, t in zip(records, texts)]
