"""Intent accuracy during training: at each evaluation, generate on a fixed validation subset and log the
scores beside eval_loss (``eval_intent_exact_match``, ...), where ``metric_for_best_model`` can name them. The
trainer (``ethsft.training.trainer.IntentSFTTrainer``) calls :class:`IntentEvaluator` from ``evaluation_loop``.
"""

from __future__ import annotations

import random
from typing import Sequence

from ethsft.evaluation.generation import answer_budget, generate_texts
from ethsft.evaluation.metrics import compute_metrics, headline, parse_intent


class IntentEvaluator:
    """Generate on a fixed subset of ``records`` and score it; the subset is drawn once, with ``seed``."""

    def __init__(self, records: Sequence[dict], tokenizer, samples: int, system_prompt: str | None = None,
                 batch_size: int = 8, max_new_tokens: int | None = None, seed: int = 0):
        if samples <= 0:
            raise ValueError("IntentEvaluator needs samples > 0 (logging.eval_accuracy_samples = 0 turns it off)")
        picked = sorted(random.Random(seed).sample(range(len(records)), min(samples, len(records))))
        self.records = [records[i] for i in picked]
        self.references = [parse_intent(r["output"]) or {} for r in self.records]
        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.batch_size = batch_size
        self.max_new_tokens = max_new_tokens or answer_budget(tokenizer, [r["output"] for r in self.records])
        self.last_metrics: dict | None = None  # the full metrics (per field, confusion) of the latest run

    def __call__(self, model, accelerator=None, stop=None) -> dict[str, float]:
        """Headline scores (``intent_exact_match``, ...) on the subset; every process gets the same numbers.
        ``stop`` (a ``stopping.SignalStop``): a signal ends generation early with ``stopping.StopRequested``."""
        rank, world = (accelerator.process_index, accelerator.num_processes) if accelerator else (0, 1)
        n = len(self.records)
        # Each process takes every world-th record; shards are padded to one length so that every process makes
        # the same number of generate() calls (ZeRO-3 generation syncs all ranks on every step).
        per_rank = -(-n // world)
        shard = [i % n for i in range(rank, per_rank * world, world)]
        texts = generate_texts(model, self.tokenizer, [self._messages(i) for i in shard], self.max_new_tokens,
                               self.batch_size, stop=stop, json_only=True)
        pairs = list(zip(shard, texts))
        if world > 1:
            from accelerate.utils import gather_object

            pairs = gather_object(pairs)
        by_index = dict(pairs)
        predictions = [parse_intent(by_index[i]) for i in range(n)]
        self.last_metrics = compute_metrics(self.references, predictions)
        return headline(self.last_metrics)

    def _messages(self, i: int):
        from ethsft.data.formatting import prompt_messages

        return prompt_messages(self.records[i], self.system_prompt)
