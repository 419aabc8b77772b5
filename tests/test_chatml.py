"""ChatML (SmolLM2, Qwen): the rendered string, the ids and the loss mask, exactly."""

from __future__ import annotations

from ethsft.data.formatting import render

RECORD = {"instruction": "Extract the structured intent from this Ethereum transaction:",
          "input": '{"from":"0xab","value":"1.5"}', "output": '{"action":"transfer","status":"success"}'}
SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
PROMPT = ("<|im_start|>system\n" + SYSTEM + "<|im_end|>\n"
          "<|im_start|>user\nExtract the structured intent from this Ethereum transaction:\n\n"
          '{"from":"0xab","value":"1.5"}<|im_end|>\n<|im_start|>assistant\n')
ANSWER = '{"action":"transfer","status":"success"}'


def ids(tok, text):
    return tok(text, add_special_tokens=False).input_ids


def test_chatml_render_keeps_smollm2s_default_system_message(chatml_tokenizer):
    tok = chatml_tokenizer
    rendered = render(RECORD, tok)
    assert rendered.text == PROMPT + ANSWER + "<|im_end|>\n"
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert rendered.input_ids == ids(tok, PROMPT) + ids(tok, ANSWER) + [im_end] + ids(tok, "\n")


def test_chatml_loss_falls_on_the_answer_im_end_and_the_newline_after_it(chatml_tokenizer):
    """Everything after the generation prompt, as TRL's prompt/completion path trains it: the newline after
    <|im_end|> too (template layout the model then learns to write after its end-of-turn)."""
    tok = chatml_tokenizer
    rendered = render(RECORD, tok)
    n_prompt, n_answer = len(ids(tok, PROMPT)), len(ids(tok, ANSWER))
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert rendered.labels == [-100] * n_prompt + ids(tok, ANSWER) + [im_end] + ids(tok, "\n")
    trained = [t for t, m in zip(rendered.input_ids, rendered.loss_mask) if m]
    assert tok.decode(trained) == ANSWER + "<|im_end|>\n"
    assert rendered.loss_mask.count(True) == n_answer + 1 + len(ids(tok, "\n"))


def test_chatml_explicit_system_prompt_replaces_the_default(chatml_tokenizer):
    rendered = render(RECORD, chatml_tokenizer, system="Answer in JSON.")
    assert rendered.text.startswith("<|im_start|>system\nAnswer in JSON.<|im_end|>\n<|im_start|>user\n")
    assert SYSTEM not in rendered.text
