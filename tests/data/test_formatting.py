"""Formatters: exact strings, exact tokens against mistral-common, and the loss mask TRL trains on."""

from __future__ import annotations

import json
import random

import pytest

from ethsft.model.embedded import mistral_tokenizer_source
from ethsft.data.formatting import render, to_messages, to_prompt_completion, to_text

# ChatML (SmolLM2, Qwen): the rendered string, the ids and the loss mask, exactly
CHATML_RECORD = {"instruction": "Extract the structured intent from this Ethereum transaction:",
                 "input": '{"from":"0xab","value":"1.5"}', "output": '{"action":"transfer","status":"success"}'}
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
PROMPT = ("<|im_start|>system\n" + SYSTEM + "<|im_end|>\n"
          "<|im_start|>user\nExtract the structured intent from this Ethereum transaction:\n\n"
          '{"from":"0xab","value":"1.5"}<|im_end|>\n<|im_start|>assistant\n')
ANSWER = '{"action":"transfer","status":"success"}'

RECORD = {"instruction": "Extract the structured intent from this Ethereum transaction:",
          "input": ' {"to":"0xdac17f958d2ee523a2206206994597c13d831ec7","value":"0"} ',
          "output": '{"action":"transfer"}\n'}


def test_prompt_completion_shape():
    assert to_prompt_completion(RECORD) == {
        "prompt": [{"role": "user", "content": "Extract the structured intent from this Ethereum transaction:\n\n"
                                               '{"to":"0xdac17f958d2ee523a2206206994597c13d831ec7","value":"0"}'}],
        "completion": [{"role": "assistant", "content": '{"action":"transfer"}'}],
    }
    assert to_messages(RECORD, system="Be brief.")["messages"][0] == {"role": "system", "content": "Be brief."}


def test_rendered_text_is_the_mistral_format(tokenizer):
    text = tokenizer.apply_chat_template(to_messages(RECORD)["messages"], tokenize=False)
    assert text == ("<s> [INST] Extract the structured intent from this Ethereum transaction:\n\n"
                    '{"to":"0xdac17f958d2ee523a2206206994597c13d831ec7","value":"0"} [/INST] {"action":"transfer"}</s>')
    with_system = tokenizer.apply_chat_template(to_messages({**RECORD, "input": ""}, system="Be brief.")["messages"],
                                                tokenize=False)
    assert with_system == ("<s> [INST] Be brief.\n\nExtract the structured intent from this Ethereum transaction: "
                           '[/INST] {"action":"transfer"}</s>')


def test_formatting_func_text_leaves_bos_to_the_tokenizer(tokenizer):
    text = to_text(RECORD, tokenizer)
    assert text.startswith(" [INST] Extract") and text.endswith("</s>")
    assert tokenizer(text).input_ids == render(RECORD, tokenizer).input_ids


def _random_records(n: int) -> list[dict]:
    rng = random.Random(1234)
    words = ["transfer", "Ünïcödé", "日本語のテキスト", "emoji 🚀🔥", "naïve café", "  spaced  out ", "tab\there",
             "line\nbreak", "[INST] nested", "quote \"x\"", "{\"k\": [1, 2]}", "—dash—", "Ελληνικά", "中文 交易"]
    out = []
    for i in range(n):
        hexdata = "0x" + "".join(rng.choice("0123456789abcdef") for _ in range(rng.choice([8, 72, 136, 1000])))
        tx = {"hash": "0x%064x" % rng.getrandbits(256), "input": hexdata, "note": rng.choice(words)}
        intent = {"action": rng.choice(["swap", "transfer"]), "amount": str(rng.random() * 10 ** rng.randint(0, 20)),
                  "memo": " ".join(rng.choice(words) for _ in range(rng.randint(0, 4)))}
        out.append({"instruction": rng.choice(words) + " " + "Extract the intent:",
                    "input": json.dumps(tx, ensure_ascii=rng.random() < 0.5) if i % 7 else "",
                    "output": json.dumps(intent, ensure_ascii=rng.random() < 0.5)})
    return out


@pytest.fixture(scope="module")
def reference():
    from mistral_common.protocol.instruct.validator import ValidationMode
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    return MistralTokenizer.from_file(str(mistral_tokenizer_source()), mode=ValidationMode.finetuning)


def _reference_ids(reference, record, system=None):
    from mistral_common.protocol.instruct.messages import AssistantMessage, SystemMessage, UserMessage
    from mistral_common.protocol.instruct.request import ChatCompletionRequest

    pc = to_prompt_completion(record, system)
    messages = [SystemMessage(content=system)] if system else []
    messages += [UserMessage(content=pc["prompt"][-1]["content"]),
                 AssistantMessage(content=pc["completion"][0]["content"])]
    return reference.encode_chat_completion(ChatCompletionRequest(messages=messages)).tokens


@pytest.mark.parametrize("system", [None, "You are an Ethereum analyst. Answer with JSON only."])
def test_token_ids_equal_mistral_common(tokenizer, reference, system):
    records = _random_records(120)
    for i, record in enumerate(records):
        ours = render(record, tokenizer, system)
        expected = _reference_ids(reference, record, system)
        assert ours.input_ids == expected, f"record {i} differs: {record!r}"
        assert ours.input_ids[-1] == tokenizer.eos_token_id == 2


def test_loss_mask_covers_exactly_the_answer_and_eos(tokenizer):
    rendered = render(RECORD, tokenizer)
    prompt_len = len(tokenizer.apply_chat_template(to_prompt_completion(RECORD)["prompt"],
                                                   add_generation_prompt=True, tokenize=True)["input_ids"])
    assert rendered.labels[:prompt_len] == [-100] * prompt_len
    assert rendered.labels[prompt_len:] == rendered.input_ids[prompt_len:]
    answer = tokenizer.decode(rendered.input_ids[prompt_len:])
    assert answer == '{"action":"transfer"}</s>'
    assert "x" in rendered.pretty(tokenizer).splitlines()[-1]  # the EOS row is marked as trained


def test_trl_tokenizes_our_prompt_completion_identically(tokenizer, tiny_model_path, tmp_path):
    """Handing TRL the raw prompt/completion rows gives the same ids and labels as ethsft's render()."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM
    from trl import SFTConfig, SFTTrainer

    records = _random_records(12)
    ds = Dataset.from_list([to_prompt_completion(r) for r in records])
    model = AutoModelForCausalLM.from_pretrained(tiny_model_path)
    trainer = SFTTrainer(model=model, processing_class=tokenizer, train_dataset=ds,
                         args=SFTConfig(output_dir=str(tmp_path), max_length=None, report_to="none", bf16=False))
    for row, record in zip(trainer.train_dataset, records):
        ours = render(record, tokenizer)
        assert row["input_ids"] == ours.input_ids
        assert row["labels"] == ours.labels


def ids(tok, text):
    return tok(text, add_special_tokens=False).input_ids


def test_chatml_render_keeps_smollm2s_default_system_message(chatml_tokenizer):
    tok = chatml_tokenizer
    rendered = render(CHATML_RECORD, tok)
    assert rendered.text == PROMPT + ANSWER + "<|im_end|>\n"
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert rendered.input_ids == ids(tok, PROMPT) + ids(tok, ANSWER) + [im_end] + ids(tok, "\n")


def test_chatml_loss_falls_on_the_answer_im_end_and_the_newline_after_it(chatml_tokenizer):
    """Everything after the generation prompt, as TRL's prompt/completion path trains it: the newline after
    <|im_end|> too (template layout the model then learns to write after its end-of-turn)."""
    tok = chatml_tokenizer
    rendered = render(CHATML_RECORD, tok)
    n_prompt, n_answer = len(ids(tok, PROMPT)), len(ids(tok, ANSWER))
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert rendered.labels == [-100] * n_prompt + ids(tok, ANSWER) + [im_end] + ids(tok, "\n")
    trained = [t for t, m in zip(rendered.input_ids, rendered.loss_mask) if m]
    assert tok.decode(trained) == ANSWER + "<|im_end|>\n"
    assert rendered.loss_mask.count(True) == n_answer + 1 + len(ids(tok, "\n"))


def test_chatml_explicit_system_prompt_replaces_the_default(chatml_tokenizer):
    rendered = render(CHATML_RECORD, chatml_tokenizer, system="Answer in JSON.")
    assert rendered.text.startswith("<|im_start|>system\nAnswer in JSON.<|im_end|>\n<|im_start|>user\n")
    assert SYSTEM not in rendered.text
