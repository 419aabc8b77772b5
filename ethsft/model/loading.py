"""Loading the tokenizer and the (4-bit) base model, on whichever device this process owns."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from ethsft.units import GiB
from ethsft.model import embedded
from ethsft.config.schema import ConfigError, Settings, notice
from ethsft.data.formatting import load_template
from ethsft.config.hf import Precision, bnb_config, resolve_precision


def model_source(s: Settings) -> str:
    """A local path or hub id for ``model.base_model``; a missing local path is an error here, not at load."""
    name = embedded.resolve(s.model.base_model)
    # hub ids are "org/name"; anything else path-like is a local folder
    looks_local = name.startswith((".", "/", "~")) or name.count("/") > 1 or Path(name).exists()
    if looks_local and not Path(name).expanduser().exists():
        raise ConfigError(f"model.base_model: local path does not exist: {name}")
    return str(Path(name).expanduser()) if looks_local else name


def check_target_modules(s: Settings, source: str) -> None:
    """``lora.target_modules`` and ``lora.modules_to_save`` against the model's module names, read from its config
    on the meta device (no weights loaded): a name that matches no module is a ConfigError, not peft's error after
    the model has loaded. A model whose config is not at hand (a Hub id offline) is not checked here."""
    import re

    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    try:
        config = AutoConfig.from_pretrained(source, cache_dir=s.model.cache_dir, revision=s.model.revision,
                                            trust_remote_code=s.model.trust_remote_code)
        with init_empty_weights():
            skeleton = AutoModelForCausalLM.from_config(config, trust_remote_code=s.model.trust_remote_code)
    except Exception:  # noqa: BLE001 - the load itself reports an unreadable model, with its own message
        return
    names = [n for n, _ in skeleton.named_modules() if n]
    linear = sorted({n.rsplit(".", 1)[-1] for n, m in skeleton.named_modules() if isinstance(m, torch.nn.Linear)})
    wanted = s.lora.target_modules
    if isinstance(wanted, str):
        if wanted != "all-linear" and not any(re.fullmatch(wanted, n) for n in names):
            raise ConfigError(f"lora.target_modules: the pattern {wanted!r} matches no module of {s.model.base_model} "
                              f"(its linear layers: {', '.join(linear)})")
    else:
        missing = [t for t in wanted if not any(n == t or n.endswith("." + t) for n in names)]
        if missing:
            raise ConfigError(f"lora.target_modules: {', '.join(missing)} {'matches' if len(missing) == 1 else 'match'} "
                              f"no module of {s.model.base_model} "
                              f"(its linear layers: {', '.join(linear)})")
    missing = [t for t in s.lora.modules_to_save or [] if not any(n == t or n.endswith("." + t) for n in names)]
    if missing:
        raise ConfigError(f"lora.modules_to_save: {', '.join(missing)} {'matches' if len(missing) == 1 else 'match'} "
                          f"no module of {s.model.base_model}")


def _from_hub(load, source: str, **kwargs):
    """``load(source, **kwargs)``; a hub failure (gated, 401/403, missing id, offline) becomes a clear HubError."""
    try:
        return load(source, **kwargs)
    except (OSError, ValueError) as e:
        from ethsft.model.hub import explain_hub_error

        err = None if Path(source).exists() else explain_hub_error(e, source)
        if err is not None:
            raise err from None
        raise


def load_tokenizer(s: Settings, source: str | None = None):
    from transformers import AutoTokenizer

    source = source or model_source(s)
    tok = _from_hub(AutoTokenizer.from_pretrained, source, cache_dir=s.model.cache_dir, revision=s.model.revision,
                    trust_remote_code=s.model.trust_remote_code)
    choice = s.model.chat_template
    if choice == "none":
        if not tok.chat_template:
            raise ConfigError(f"the tokenizer of {source} has no chat template and model.chat_template is 'none': "
                              "set model.chat_template to 'mistral' (ethsft's packaged Mistral-Instruct template), "
                              "'auto', or the path of a .jinja template file")
    elif choice == "mistral" or (choice == "auto" and not tok.chat_template):
        if choice == "auto":
            notice(f"{source} has no chat template: using ethsft's packaged Mistral-Instruct template")
        tok.chat_template = load_template("mistral_instruct")
    elif choice != "auto":
        path = Path(choice)
        if not path.is_file():
            raise ConfigError(f"model.chat_template: file not found: {choice}")
        tok.chat_template = path.read_text(encoding="utf-8")
    if tok.pad_token is None:
        # Mistral has no pad token; padding positions are masked out of attention and loss anyway.
        tok.pad_token = tok.unk_token or tok.eos_token
    return tok


def resolve_attention(requested: str) -> str:
    """The attention kernel to ask transformers for; a missing package falls back to sdpa with a notice."""
    needs = {"flash_attention_2": "flash_attn", "flash_attention_3": "flash_attn_interface"}
    if requested in needs and importlib.util.find_spec(needs[requested]) is None:
        notice(f"model.attn_implementation={requested} needs the {needs[requested]} package, which is not "
               "installed: falling back to sdpa")
        return "sdpa"
    if requested.startswith("flash_attention") and not torch.cuda.is_available():
        notice(f"model.attn_implementation={requested} needs a CUDA GPU: falling back to sdpa")
        return "sdpa"
    return requested


def device_map() -> dict | None:
    """Each process loads the whole (4-bit) model on its own GPU: data parallelism, not model sharding."""
    if not torch.cuda.is_available():
        return None
    from accelerate import PartialState

    return {"": PartialState().local_process_index}


def load_model(s: Settings, precision: Precision | None = None, source: str | None = None):
    from transformers import AutoModelForCausalLM

    precision = precision or resolve_precision(s)
    source = source or model_source(s)
    quant = bnb_config(s, precision)
    dtype = precision.compute_dtype if torch.cuda.is_available() else torch.float32
    if quant is not None and s.quantization.bnb_4bit_quant_storage:
        dtype = quant.bnb_4bit_quant_storage  # ZeRO-3 shards 4-bit weights stored in this dtype
    model = _from_hub(
        AutoModelForCausalLM.from_pretrained,
        source,
        cache_dir=s.model.cache_dir,
        revision=s.model.revision,
        quantization_config=quant,
        dtype=dtype,
        attn_implementation=resolve_attention(s.model.attn_implementation),
        device_map=device_map(),
        trust_remote_code=s.model.trust_remote_code,
        use_safetensors=True,
    )
    model.config.use_cache = False  # the KV cache is useless in training and costs memory
    return model


def keep_4bit_layout_for_zero3(model) -> int:
    """Under DeepSpeed ZeRO-3, stop bitsandbytes' CPU repacking of 4-bit weights; returns how many layers.

    bitsandbytes (0.49+) rewrites a ``Linear4bit`` weight into an AVX512-BF16 layout (``weight.data`` replaced by a
    uint8 tensor of another shape, ``quant_state.packing_format_for_cpu``) the first time the layer runs on CPU in
    eval mode without grad, i.e. at the first evaluation, and undoes it in ``_save_to_state_dict``. Under ZeRO-3
    ``weight.data`` is DeepSpeed's gathered/partitioned storage in the quant-storage dtype: the repack swaps it
    behind DeepSpeed's back and the next checkpoint dies in ``_convert_weight_packed_for_cpu_inverse``
    (``assert packed_weight.dtype == torch.uint8``). The plain 4-bit CPU kernel is used instead (GPUs never repack).
    """
    count = 0
    for module in model.modules():
        if hasattr(module, "support_avx512bf16_for_cpu"):
            module.support_avx512bf16_for_cpu = False
            count += 1
    return count


def memory_gb() -> float | None:
    """Memory the process holds on its GPU now, in GB (None on CPU)."""
    if not torch.cuda.is_available():
        return None
    return torch.cuda.memory_allocated() / GiB
