"""Chat messages -> token ids where only the chat template's own control tokens are control tokens.

A transaction's calldata strings, function signature and decoded arguments come from whoever sent it. Rendered
into the template and tokenized as one string, a literal ``</s>`` (Mistral) or ``<|im_end|>`` (ChatML) inside them
would become a real end-of-turn token: an attacker could end a prompt early or teach the model to stop mid-answer.

So the template is rendered with a marker in place of each message's content. The special tokens the template
itself writes are found in that skeleton; the text between them (template text and message content together) is
tokenized as the tokenizer would tokenize it between those special tokens, but with every special token it
contains read as plain text (the ``tokenizers`` backend's ``encode_special_tokens``). Text without special-token
strings gets exactly the ids of ``tokenizer(rendered_text)``; with them, the ids mistral-common gives, which
keeps them as text too.
"""

from __future__ import annotations

import json
import re
import weakref

_OPEN, _CLOSE = "\ue000", "\ue001"  # private-use code points: never in a template, stripped from content


class UnsafeTemplateError(ValueError):
    """The chat template changes message content in a way the markers cannot follow."""


def chat_text_and_ids(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool = False
                      ) -> tuple[str, list[int]]:
    """The rendered chat text and its token ids, with no control token coming from message content."""
    contents = [_clean(m["content"]) for m in messages]
    marked = [{**m, "content": f"{_OPEN}{i}{_CLOSE}"} for i, m in enumerate(messages)]
    skeleton = tokenizer.apply_chat_template(marked, add_generation_prompt=add_generation_prompt, tokenize=False)
    pieces = re.split(f"{_OPEN}(\\d+){_CLOSE}", skeleton)  # template, index, template, index, ..., template
    indices = [int(i) for i in pieces[1::2]]
    if sorted(indices) != list(range(len(messages))):
        raise UnsafeTemplateError(
            "the chat template does not write each message's content exactly once, as given; ethsft cannot keep "
            "control-token strings in the content as text with it")
    plain = tokenizer.apply_chat_template([{**m, "content": c} for m, c in zip(messages, contents)],
                                          add_generation_prompt=add_generation_prompt, tokenize=False)
    if _fill(pieces, contents) != plain:  # the template changes content, e.g. Mistral's `| trim`: follow it
        contents = [c.strip() for c in contents]
        if _fill(pieces, contents) != plain:
            raise UnsafeTemplateError(
                "the chat template changes message content in a way other than trimming it; ethsft cannot keep "
                "control-token strings in the content as text with it")
    first, later, specials = _backends(tokenizer)
    sections: list[tuple[str, str]] = [("text", "")]  # ("text", s) and ("special", token), in order
    for k, piece in enumerate(pieces):
        if k % 2:  # message content: always text
            sections[-1] = ("text", sections[-1][1] + contents[int(piece)])
            continue
        for j, part in enumerate(specials.split(piece) if specials else [piece]):
            if j % 2:
                sections += [("special", part), ("text", "")]
            else:
                sections[-1] = ("text", sections[-1][1] + part)
    ids: list[int] = []
    for i, (kind, s) in enumerate(sections):
        if kind == "special":
            ids.append(tokenizer.convert_tokens_to_ids(s))
        elif s:
            ids += (first if i == 0 else later).encode(s, add_special_tokens=False).ids
    return "".join(s for _, s in sections), ids


def _fill(pieces: list[str], contents: list[str]) -> str:
    return "".join(contents[int(p)] if k % 2 else p for k, p in enumerate(pieces))


def chat_ids(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> list[int]:
    return chat_text_and_ids(tokenizer, messages, add_generation_prompt)[1]


def _clean(content) -> str:
    return str(content).replace(_OPEN, "").replace(_CLOSE, "")


_BACKENDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _backends(tokenizer):
    """For ``tokenizer`` (built once, kept while it lives): two copies of its backend that read special-token
    strings as text, one for the text at the start (it gets the word-start prefix, as the whole string would), one
    for text after a special token (no prefix: the backend adds it only at offset 0 of the whole input); and a
    pattern matching its special tokens, longest first."""
    from tokenizers import Tokenizer

    key = (len(tokenizer.added_tokens_decoder), tokenizer.backend_tokenizer.get_vocab_size())
    cached = _BACKENDS.get(tokenizer)
    if cached is None or cached[0] != key:
        spec = tokenizer.backend_tokenizer.to_str()
        first = Tokenizer.from_str(spec)
        later = Tokenizer.from_str(json.dumps(_without_prefix(json.loads(spec))))
        for backend in (first, later):
            backend.encode_special_tokens = True
        tokens = sorted({t.content for t in tokenizer.added_tokens_decoder.values() if t.special}, key=len,
                        reverse=True)
        pattern = re.compile("(" + "|".join(map(re.escape, tokens)) + ")") if tokens else None
        cached = _BACKENDS[tokenizer] = (key, (first, later, pattern))
    return cached[1]


def _without_prefix(node):
    """The tokenizer spec with Metaspace's word-start prefix off and Prepend normalizers removed."""
    if isinstance(node, dict):
        if node.get("type") == "Metaspace":
            node = {**node, "prepend_scheme": "never"}
        if node.get("type") == "Sequence" and "normalizers" in node:
            node = {**node, "normalizers": [n for n in node["normalizers"] if n.get("type") != "Prepend"]}
        return {k: _without_prefix(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_without_prefix(v) for v in node]
    return node
