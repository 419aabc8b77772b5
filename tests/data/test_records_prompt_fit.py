"""records.fit_prompt: a prompt longer than data.max_length is cut in its middle (or refused) as training does."""

import pytest

from ethsft.data.formatting import prompt_messages
from ethsft.data.records import DataError, fit_prompt
from ethsft.evaluation.generation import prompt_ids


def test_an_overlong_prompt_keeps_its_start_and_end(tokenizer):
    record = {"instruction": "Extract", "input": "0x" + "ab" * 5000, "output": ""}
    ids = prompt_ids(tokenizer, prompt_messages(record, None))
    said = []
    cut = fit_prompt(ids, tokenizer, 64, "truncate", "input 1", said.append)
    assert len(cut) == 64
    assert cut[:20] == ids[:20] and cut[-20:] == ids[-20:]  # [INST] Extract ... and the end with [/INST]
    assert tokenizer.decode(cut[-4:]).endswith("[/INST]")
    assert said == [f"input 1: {len(ids)} tokens cut in the middle to data.max_length=64 (data.overlong: truncate)"]
    assert fit_prompt(ids[:50], tokenizer, 64, "truncate", "input 1") == ids[:50]


def test_drop_refuses_an_overlong_prompt(tokenizer):
    with pytest.raises(DataError) as e:
        fit_prompt(list(range(100)), tokenizer, 64, "drop", "input 3")
    assert str(e.value) == "input 3: 100 tokens, longer than data.max_length=64, and data.overlong is 'drop'; shorten it"
