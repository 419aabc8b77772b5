"""JsonAnswerStop: where scoring ends an answer, on exact texts through a real tokenizer."""

from __future__ import annotations

import pytest
import torch


def first_stop(tokenizer, answer: str) -> str | None:
    """Feed ``answer`` one token at a time behind a one-token prompt; the text generated when the row was ended."""
    from ethsft.evaluation.generation import JsonAnswerStop

    ids = tokenizer(answer, add_special_tokens=False)["input_ids"]
    crit = JsonAnswerStop(tokenizer, 1)
    for n in range(1, len(ids) + 1):
        if crit(torch.tensor([[tokenizer.bos_token_id, *ids[:n]]]), None).tolist() == [True]:
            return tokenizer.decode(ids[:n])
    return None


@pytest.mark.parametrize("answer, kept", [
    ('{"a": "}", "b": [1, {"c": "]"}]}', None),  # braces in strings and nested ones do not close it
    ('{"a": "say \\"}\\" twice"}', None),  # nor does an escaped quote end a string
    ('{"a": 1}   \n', None),  # trailing blanks: it may still end at EOS and parse
    ('{"a": 1} and more', '{"a": 1} and'),  # text after the object: cannot parse any more
    ('{"a": 1}{"b": 2}', '{"a": 1}{'),
    ('The answer is', 'The'),  # prose: decided at its first word
    ('[1, 2]', '['),  # a JSON array is not an intent object
])
def test_an_answer_ends_where_its_score_is_decided(tokenizer, answer, kept):
    from ethsft.evaluation.metrics import parse_intent

    got = first_stop(tokenizer, answer)
    assert got == kept
    if got is not None:
        assert parse_intent(got) is None and parse_intent(answer) is None  # the score it would have had


def test_rows_are_decided_independently_and_never_resume(tokenizer):
    from ethsft.evaluation.generation import JsonAnswerStop

    crit = JsonAnswerStop(tokenizer, 0)
    rows = [tokenizer(t, add_special_tokens=False)["input_ids"] for t in ('{"a": 1} x {', 'Hi {"a": 1}')]
    width = min(map(len, rows))
    seen = [crit(torch.tensor([r[:n] for r in rows]), None).tolist() for n in range(1, width + 1)]
    assert seen[0] == [False, True] and seen[-1] == [True, True]
    assert all(a[1] for a in seen)  # the prose row stays ended though a "{" comes later
