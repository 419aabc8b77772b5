"""The public formatters in a plain TRL script: with TRL's default ``SFTConfig()`` (``assistant_only_loss=True``
for ``messages``), the ids and labels SFTTrainer trains on, after its dataset preparation and its collator, are
exactly ``render()``'s, for the Mistral and the ChatML tokenizer."""

from __future__ import annotations

import copy
import json
import random

import pytest

from conftest import SMOLLM2_TEMPLATE, make_record
from ethsft.data.formatting import (load_template, render, to_ids, to_messages, to_prompt_completion, to_text,
                                    training_template)


def _records(n: int = 6) -> list[dict]:
    rng = random.Random(7)
    records = [make_record(rng) for _ in range(max(n, 3))]
    records[1] = {**records[1], "input": ""}  # no input: the instruction alone
    records[2] = {**records[2], "output": records[2]["output"] + "\n\n"}  # stripped like every turn
    return records[:n]


def _trained(trainer) -> list[tuple[list[int], list[int]]]:
    """(ids, labels) of each training row as the collator hands them to the model, padding taken off (and checked
    to carry no loss)."""
    rows = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    batch = trainer.data_collator(rows)
    out = []
    for i, row in enumerate(rows):
        n = len(row["input_ids"])
        assert batch["labels"][i, n:].tolist() == [-100] * (batch["labels"].shape[1] - n)
        out.append((batch["input_ids"][i, :n].tolist(), batch["labels"][i, :n].tolist()))
    return out


def _trainer(model_path, tokenizer, rows: list[dict], tmp_path, **config):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    return SFTTrainer(model=AutoModelForCausalLM.from_pretrained(model_path), processing_class=tokenizer,
                      train_dataset=Dataset.from_list(rows),
                      # bf16 off: SFTConfig's default needs a GPU; no setting that decides the labels is changed
                      args=SFTConfig(output_dir=str(tmp_path), bf16=False, **config))


@pytest.fixture(params=["mistral", "chatml"])
def case(request, tokenizer, tiny_model_path, chatml_tokenizer, chatml_model_path):
    """(tokenizer, model path, system prompt) for each chat template family; a copy of the tokenizer, since a test
    may set its chat template."""
    if request.param == "mistral":
        return copy.deepcopy(tokenizer), tiny_model_path
    return copy.deepcopy(chatml_tokenizer), chatml_model_path


@pytest.mark.parametrize("system", [None, "Answer with JSON only."])
def test_prompt_completion_with_default_sftconfig_trains_renders_labels(case, system, tmp_path):
    tok, model_path = case
    records = _records()
    trainer = _trainer(model_path, tok, [to_prompt_completion(r, system) for r in records], tmp_path)
    for (ids, labels), record in zip(_trained(trainer), records):
        ours = render(record, tok, system)
        assert (ids, labels) == (ours.input_ids, ours.labels)


def test_ids_with_default_sftconfig_train_renders_labels(case, tmp_path):
    tok, model_path = case
    records = _records()
    rows = [to_ids(r, tok) for r in records]
    assert set(rows[0]) == {"input_ids", "labels"}
    trainer = _trainer(model_path, tok, rows, tmp_path)
    for (ids, labels), record in zip(_trained(trainer), records):
        ours = render(record, tok)
        assert (ids, labels) == (ours.input_ids, ours.labels)
        assert -100 in labels and labels[-1] != -100  # the prompt is left out, the answer's end trained


def test_messages_with_assistant_only_loss_and_the_training_template_train_renders_labels(case, tmp_path):
    from trl.chat_template_utils import is_chat_template_stop_token_trained

    tok, model_path = case
    own = tok.chat_template
    tok.chat_template = training_template(tok)
    assert is_chat_template_stop_token_trained(tok)  # TRL's check: the end-of-turn token is trained
    records = _records()
    trainer = _trainer(model_path, tok, [to_messages(r) for r in records], tmp_path, assistant_only_loss=True)
    tok.chat_template = own
    for (ids, labels), record in zip(_trained(trainer), records):
        ours = render(record, tok)
        assert (ids, labels) == (ours.input_ids, ours.labels)


def test_text_trains_every_token_as_render_of_the_text_shows(case, tmp_path):
    """to_text is TRL's language-modeling form: the loss falls on every token, prompt included."""
    tok, model_path = case
    records = _records(3)
    trainer = _trainer(model_path, tok, [{"text": to_text(r, tok)} for r in records], tmp_path)
    for (ids, labels), record in zip(_trained(trainer), records):
        ours = render({"text": to_text(record, tok)}, tok)
        assert (ids, labels) == (ours.input_ids, ours.labels) and labels == ids


def test_chatml_completion_is_everything_after_the_generation_prompt(chatml_tokenizer):
    """The answer, <|im_end|> and the newline after it: what TRL's prompt/completion path trains."""
    tok = chatml_tokenizer
    record = _records(1)[0]
    rendered = render(record, tok)
    trained = [t for t, m in zip(rendered.input_ids, rendered.loss_mask) if m]
    assert tok.decode(trained) == record["output"] + "<|im_end|>\n"
    assert rendered.loss_mask[-1]


def test_training_template_matches_the_tokenizers_own(tokenizer, chatml_tokenizer):
    assert training_template(tokenizer) == load_template("mistral_instruct_training")
    assert training_template(chatml_tokenizer) == load_template("chatml_training")
    messages = [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]
    for tok in (tokenizer, chatml_tokenizer):
        for prompt in (False, True):
            assert (tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=prompt)
                    == tok.apply_chat_template(messages, chat_template=training_template(tok), tokenize=False,
                                               add_generation_prompt=prompt))


def test_training_template_refuses_a_template_it_does_not_ship(chatml_tokenizer):
    tok = copy.deepcopy(chatml_tokenizer)
    tok.chat_template = SMOLLM2_TEMPLATE.replace("named SmolLM", "named Other")
    with pytest.raises(ValueError) as e:
        training_template(tok)
    assert str(e.value) == (
        "training_template: the tokenizer's chat template renders like none ethsft ships (Mistral Instruct "
        "(mistral_instruct_training), ChatML (SmolLM2) (chatml_training)); wrap each assistant turn of your "
        "template, from after the generation prompt through the end-of-turn, in {% generation %} ... "
        "{% endgeneration %}, or see TRL's trl.chat_template_utils.get_training_chat_template")


def test_render_shows_every_trl_format(tokenizer):
    """render takes TRL's rows as they are: plain prompt/completion (completion + EOS trained) and multi-turn
    messages (each assistant turn with its end-of-turn token trained, nothing else)."""
    tok = tokenizer
    plain = render({"prompt": "Intent of tx 0xab:", "completion": ' {"action":"swap"}'}, tok)
    assert plain.input_ids == tok("Intent of tx 0xab: {\"action\":\"swap\"}</s>").input_ids
    assert tok.decode([t for t, m in zip(plain.input_ids, plain.loss_mask) if m]) == '{"action":"swap"}</s>'
    text = to_text(_records(1)[0], tok)
    assert render(text, tok) == render({"text": text}, tok)  # a plain string is a text row
    assert render(text, tok).labels == tok(text).input_ids  # every token: BOS, prompt, answer and </s>
    turns = [{"role": "user", "content": "a"}, {"role": "assistant", "content": json.dumps({"x": 1})},
             {"role": "user", "content": "b"}, {"role": "assistant", "content": "c"}]
    rendered = render({"messages": turns}, tok)
    mask, spans = rendered.loss_mask, []
    for i, t in enumerate(rendered.input_ids):
        if mask[i] and i and mask[i - 1]:
            spans[-1].append(t)
        elif mask[i]:
            spans.append([t])
    assert [tok.decode(span) for span in spans] == ['{"x": 1}</s>', "c</s>"]


def test_multi_turn_messages_render_as_trls_assistant_only_loss_trains_them(case, tmp_path):
    """ethsft's own training of a ``messages`` dataset (render's labels) equals TRL's assistant_only_loss with the
    training template: every assistant turn with its end-of-turn (and ChatML's newline), nothing else."""
    tok, model_path = case
    conversations = [{"messages": [
        {"role": "system", "content": "Answer with JSON only."},
        {"role": "user", "content": f"{r['instruction']}\n\n{r['input']}"},
        {"role": "assistant", "content": r["output"]},
        {"role": "user", "content": "Again, please."},
        {"role": "assistant", "content": r["output"]}]} for r in _records(3)]
    tok.chat_template = training_template(tok)
    trainer = _trainer(model_path, tok, conversations, tmp_path, assistant_only_loss=True)
    for (ids, labels), row in zip(_trained(trainer), conversations):
        ours = render(row, tok)
        assert (ids, labels) == (ours.input_ids, ours.labels)
        starts = [i for i, label in enumerate(labels) if label != -100 and (i == 0 or labels[i - 1] == -100)]
        assert len(starts) == 2 and labels[-1] != -100  # the two assistant turns, the last one to the row's end


def test_render_names_the_keys_of_a_row_no_format_matches(tokenizer):
    with pytest.raises(ValueError) as e:
        render({"question": "q", "answer": "a"}, tokenizer)
    assert str(e.value) == ("render: a row's keys (question, answer) make none of TRL's dataset formats "
                            "(instruction/input/output, prompt/completion, messages or text)")
