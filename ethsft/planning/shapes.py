"""A base model's shape from its ``config.json``, without loading weights: what the memory and speed models and
``ethsft bench``'s FLOPs count read. The shape comes from a local folder, an embedded shape, the hub through
``AutoConfig``, or, offline, a built-in table of common base models."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ethsft.config.schema import ConfigError, Settings

LINEARS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class ModelShape:
    name: str
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    vocab: int
    tied: bool = False
    source: str = ""
    tokenizer: str = "own"  # "mistral-v1": the embedded Mistral tokenizer is exact for this model when offline
    attn_head_dim: int = 0  # config.json's head_dim where it sets one (0: hidden // heads)

    @property
    def head_dim(self) -> int:
        return self.attn_head_dim or self.hidden // self.heads

    @property
    def q_dim(self) -> int:
        return self.heads * self.head_dim

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_dim

    def linear_dims(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each decoder linear."""
        h, i, q, kv = self.hidden, self.intermediate, self.q_dim, self.kv_dim
        return {"q_proj": (h, q), "k_proj": (h, kv), "v_proj": (h, kv), "o_proj": (q, h),
                "gate_proj": (h, i), "up_proj": (h, i), "down_proj": (i, h)}

    @property
    def linear_params(self) -> int:
        return self.layers * sum(a * b for a, b in self.linear_dims().values())

    @property
    def embed_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied else 2)

    @property
    def norm_params(self) -> int:
        return (2 * self.layers + 1) * self.hidden

    @property
    def total_params(self) -> int:
        return self.linear_params + self.embed_params + self.norm_params


def _shape(name, h, i, layers, heads, kv, vocab, tokenizer="own"):
    return ModelShape(name, h, i, layers, heads, kv, vocab, source="built-in table", tokenizer=tokenizer)


_MISTRAL_7B = dict(h=4096, i=14336, layers=32, heads=32, kv=8)
# Shapes of common base models, for offline use (their config.json values).
BUILTIN_SHAPES: dict[str, ModelShape] = {
    "mistralai/mistral-7b-instruct-v0.1": _shape("Mistral-7B-Instruct-v0.1", **_MISTRAL_7B, vocab=32000, tokenizer="mistral-v1"),
    "mistralai/mistral-7b-instruct-v0.2": _shape("Mistral-7B-Instruct-v0.2", **_MISTRAL_7B, vocab=32000, tokenizer="mistral-v1"),
    "mistralai/mistral-7b-v0.1": _shape("Mistral-7B-v0.1", **_MISTRAL_7B, vocab=32000, tokenizer="mistral-v1"),
    "mistralai/mistral-7b-instruct-v0.3": _shape("Mistral-7B-Instruct-v0.3", **_MISTRAL_7B, vocab=32768),
    "mistralai/mistral-7b-v0.3": _shape("Mistral-7B-v0.3", **_MISTRAL_7B, vocab=32768),
    "meta-llama/llama-2-7b-hf": _shape("Llama-2-7B", 4096, 11008, 32, 32, 32, 32000),
    "meta-llama/llama-2-7b-chat-hf": _shape("Llama-2-7B-chat", 4096, 11008, 32, 32, 32, 32000),
    "meta-llama/llama-2-13b-hf": _shape("Llama-2-13B", 5120, 13824, 40, 40, 40, 32000),
    "meta-llama/llama-2-13b-chat-hf": _shape("Llama-2-13B-chat", 5120, 13824, 40, 40, 40, 32000),
}


def shape_from_config(config: dict, name: str, source: str) -> ModelShape:
    if not isinstance(config, dict):
        raise ConfigError(f"{source}: expected a JSON object (a model's config.json), got {type(config).__name__}")
    for key in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads", "vocab_size",
                "num_key_value_heads", "head_dim"):
        value = config.get(key)  # a missing required one: KeyError below; null head_dim / KV heads: the defaults
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{source}: {key} is {value!r}; expected a whole number of at least 1")
    try:
        h = config["hidden_size"]
        heads = config["num_attention_heads"]
        return ModelShape(name, h, config["intermediate_size"], config["num_hidden_layers"], heads,
                          config.get("num_key_value_heads") or heads, config["vocab_size"],
                          bool(config.get("tie_word_embeddings", False)), source,
                          attn_head_dim=config.get("head_dim") or 0)
    except KeyError as e:
        raise ConfigError(f"{source}: config.json lacks {e.args[0]} (expected a Llama/Mistral-style decoder)") from None


def model_shape(s: Settings) -> ModelShape:
    """The base model's shape, without loading weights: embedded shape, local config.json, built-in table, hub."""
    from ethsft.model import embedded

    name = s.model.base_model
    if embedded.is_embedded(name):
        key = name[len(embedded.EMBEDDED_PREFIX):]
        if key not in embedded.SHAPES:
            raise ConfigError(f"model.base_model: unknown embedded model {name!r}; choose one of: "
                              + ", ".join(embedded.EMBEDDED_PREFIX + k for k in embedded.SHAPES))
        cfg = dict(embedded.SHAPES[key], vocab_size=32000, tie_word_embeddings=False)
        return shape_from_config(cfg, name, "embedded shape (Mistral tokenizer, 32000 tokens)")
    path = Path(name).expanduser()
    if (path / "config.json").is_file():
        try:
            config = json.loads((path / "config.json").read_text(encoding="utf-8"))
        except (ValueError, OSError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise ConfigError(f"{path / 'config.json'}: not a readable JSON file ({e})") from None
        return shape_from_config(config, name, str(path / "config.json"))
    if name.lower() in BUILTIN_SHAPES:
        return BUILTIN_SHAPES[name.lower()]
    try:
        from transformers import AutoConfig

        cfg = AutoConfig.from_pretrained(name, cache_dir=s.model.cache_dir, revision=s.model.revision,
                                         trust_remote_code=s.model.trust_remote_code)
    except Exception as e:  # offline, gated, typo: all end here
        raise ConfigError(f"model.base_model: cannot read the config of {name!r} ({type(e).__name__}: "
                          f"{str(e).splitlines()[0] if str(e) else ''}); offline, ethsft knows these shapes: "
                          f"{', '.join(v.name for v in BUILTIN_SHAPES.values())}") from None
    cfg = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
    return shape_from_config(cfg.to_dict(), name, "hub config.json")


def targeted(s: Settings, shape: ModelShape) -> list[str]:
    """The decoder linears LoRA adapts (``all-linear`` = all seven)."""
    tm = s.lora.target_modules
    if isinstance(tm, str):
        return list(LINEARS) if tm == "all-linear" else [tm]
    unknown = [m for m in tm if m not in LINEARS]
    if unknown:
        raise ConfigError(f"lora.target_modules: {', '.join(unknown)} is not a decoder linear of this model "
                          f"({', '.join(LINEARS)})")
    return list(tm)


def lora_params(s: Settings, shape: ModelShape) -> int:
    """Trainable adapter parameters: r x (in + out) per targeted linear per layer."""
    dims = shape.linear_dims()
    return shape.layers * sum(s.lora.r * (dims[m][0] + dims[m][1]) for m in targeted(s, shape))
