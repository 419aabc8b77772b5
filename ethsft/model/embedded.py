"""The embedded default: a small Mistral-architecture model with random weights and the real
Mistral-7B-Instruct tokenizer, built offline (no hub, no GPU).

``base_model: embedded:tiny-mistral`` in a config resolves here; every other name goes to
``from_pretrained`` unchanged, so the demo and a 7B run share one code path.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

EMBEDDED_PREFIX = "embedded:"
# The tests' model: as small as a Mistral-architecture model gets, fast enough for a test suite.
TINY_SHAPE = dict(
    hidden_size=64,
    intermediate_size=192,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    max_position_embeddings=4096,
)
# What `ethsft demo` trains: as narrow as the tests' model (the 32000-token output layer costs most of every
# CPU step) but with 4 layers and 4 full key/value heads, enough to learn the intent format and some copying
# from the transaction within minutes. (Wider, or with 8 heads, it learned slower on 2 CPU cores.)
SMALL_SHAPE = dict(TINY_SHAPE, num_hidden_layers=4, num_key_value_heads=4)
# Mistral-7B-Instruct-v0.2's shape, for GPU benchmarks with random weights.
MISTRAL_7B_SHAPE = dict(
    hidden_size=4096,
    intermediate_size=14336,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=8,
    max_position_embeddings=32768,
    rope_theta=1e6,
)
SHAPES = {"tiny-mistral": TINY_SHAPE, "small-mistral": SMALL_SHAPE, "mistral-7b": MISTRAL_7B_SHAPE}
# A random lm_head at the usual init (std 0.02) behind a unit RMSNorm gives logits within about +-0.5:
# no adapter upstream can make any token likely. Pretrained heads are far larger; the tiny models' heads are
# drawn at this std so that LoRA training can move the output distribution, as it does on a real model.
HEAD_INIT_STD = {"tiny-mistral": float(os.environ.get("ETHSFT_TINY_HEAD_STD", "0.5")), "small-mistral": 0.1}
# Bump when build_model changes what it writes: cached models of an older build are then rebuilt, not reused.
BUILD_VERSION = 1


def cache_root() -> Path:
    return Path(os.environ.get("ETHSFT_CACHE", Path.home() / ".cache" / "ethsft"))


def is_embedded(name: str) -> bool:
    return str(name).startswith(EMBEDDED_PREFIX)


def names() -> list[str]:
    """Every ``embedded:`` name: the random-weight shapes and the real pretrained models."""
    from ethsft.model.pretrained import MODELS

    return [EMBEDDED_PREFIX + s for s in (*SHAPES, *MODELS)]


def resolve(name: str) -> str:
    """Path for ``embedded:<shape>`` or ``embedded:<pretrained>`` (built once, then cached); any other name is
    returned as is."""
    from ethsft.model import pretrained

    if not is_embedded(name):
        return name
    shape = name[len(EMBEDDED_PREFIX):]
    if shape in pretrained.MODELS:
        root = cache_root() / "models"
        found = pretrained.cached(root, shape)
        if found is None:
            with _build_lock(root / shape):
                found = pretrained.cached(root, shape) or pretrained.build(root, shape, _atomic_save)
        return str(found)
    if shape not in SHAPES:
        raise ValueError(f"unknown embedded model {name!r}; choose one of: " + ", ".join(names()))
    target = cache_root() / "models" / cache_name(shape)
    if not (target / "config.json").exists():
        with _build_lock(target):  # ranks of a multi-process run start at once: one builds, the others wait
            if not (target / "config.json").exists():
                build_model(target, shape)
    return str(target)


def fingerprint(shape: str) -> str:
    """A short hash of everything that decides a shape's weights: its config, init stds and the build version."""
    import hashlib
    import json

    recipe = {"shape": SHAPES[shape], "head_std": HEAD_INIT_STD.get(shape), "build": BUILD_VERSION}
    return hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:8]


def cache_name(shape: str) -> str:
    """Folder of a built shape under ``<cache>/models``: ``<shape>-<fingerprint>``, so a changed shape or init
    never loads a stale build."""
    return f"{shape}-{fingerprint(shape)}"


def _build_lock(target: Path):
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(target.parent / f".{target.name}.lock"))


def mistral_tokenizer_source() -> Path:
    """mistral-common's copy of the Mistral-7B-Instruct v0.1/v0.2 sentencepiece model."""
    from mistral_common.tokens.tokenizers.mistral import MistralTokenizer

    return Path(MistralTokenizer._data_path()) / "tokenizer.model.v1"


def build_tokenizer(target: Path | None = None):
    """A fast HF tokenizer converted from mistral-common's ``tokenizer.model.v1``, with the chat template.

    transformers' converter orders the BPE merges differently from sentencepiece's piece scores, which
    splits runs of spaces differently ("x  y"). The merges are re-ranked by score, as in the hub's
    Mistral-7B-Instruct tokenizer.json, so ids equal sentencepiece's (and mistral-common's).
    """
    from transformers import AutoTokenizer

    target = Path(target or cache_root() / "tokenizer-mistral-v1")
    if not (target / "tokenizer.json").exists():
        with _build_lock(target):
            if not (target / "tokenizer.json").exists():
                _atomic_save(target, _convert_tokenizer)
    return AutoTokenizer.from_pretrained(target)


def _convert_tokenizer(out: str) -> None:
    from transformers import LlamaTokenizer

    from ethsft.data.formatting import load_template

    with tempfile.TemporaryDirectory() as src:
        shutil.copy(mistral_tokenizer_source(), Path(src) / "tokenizer.model")
        tok = LlamaTokenizer.from_pretrained(src, legacy=False, add_bos_token=True, add_eos_token=False)
    tok.chat_template = load_template("mistral_instruct")
    tok.save_pretrained(out)
    _rank_merges_by_score(Path(out) / "tokenizer.json")


def _rank_merges_by_score(tokenizer_json: Path) -> None:
    import json

    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(mistral_tokenizer_source()))
    score = {sp.id_to_piece(i): sp.get_score(i) for i in range(sp.get_piece_size())}
    data = json.loads(tokenizer_json.read_text(encoding="utf-8"))
    data["model"]["merges"].sort(key=lambda pair: -score.get(pair[0] + pair[1], float("-inf")))
    tokenizer_json.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")


def build_model(target: Path, shape: str = "tiny-mistral", seed: int = 0) -> Path:
    """Save a randomly initialised Mistral model of ``shape`` plus the tokenizer to ``target``."""
    import torch
    from transformers import MistralConfig, MistralForCausalLM

    tok = build_tokenizer()
    config = MistralConfig(vocab_size=len(tok), bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                           tie_word_embeddings=False, **SHAPES[shape])
    torch.manual_seed(seed)
    # Initialise straight in bf16 (on the GPU when there is one): a 7B shape in fp32 on CPU takes minutes.
    default_dtype = torch.get_default_dtype()
    torch.set_default_dtype(torch.bfloat16)
    try:
        with torch.device("cuda" if torch.cuda.is_available() else "cpu"):
            model = MistralForCausalLM(config)
    finally:
        torch.set_default_dtype(default_dtype)
    if shape in HEAD_INIT_STD:
        with torch.no_grad():
            model.lm_head.weight.normal_(0.0, HEAD_INIT_STD[shape])

    def save(tmp: str) -> None:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)

    _atomic_save(Path(target), save)
    return Path(target)


def _atomic_save(target: Path, save) -> None:
    """Write into a temporary sibling folder and rename it into place: a killed build leaves nothing."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}."))
    try:
        save(str(tmp))
        if target.exists():  # another process won the race
            shutil.rmtree(tmp)
        else:
            os.replace(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
