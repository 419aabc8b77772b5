"""Scoring structured intents: metrics (pure), batched generation, dataset evaluation, training-time metrics."""

from ethsft.evaluation.metrics import compute_metrics, flatten, format_table, parse_intent, score, values_equal

__all__ = ["compute_metrics", "flatten", "format_table", "parse_intent", "score", "values_equal", "evaluate_model"]


def evaluate_model(*args, **kwargs):
    """See :func:`ethsft.evaluation.evaluate.evaluate_model` (imported on call: it pulls in torch)."""
    from ethsft.evaluation.evaluate import evaluate_model as impl

    return impl(*args, **kwargs)
