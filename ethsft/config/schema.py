"""The one config schema: ethsft's sections on top of TRL's ``SFTConfig``, peft's ``LoraConfig`` and transformers'
``BitsAndBytesConfig``.

A config file is either the fine-tuning guide's nested YAML (sections ``model``, ``lora``, ``quantization``,
``training``, ``data``, ``optimization``, ``logging``) or a flat TRL recipe, the file ``trl sft --config`` reads
(``model_name_or_path``, ``dataset_name``, ``learning_rate``, ``use_peft``, ``lora_r``, ...). Both can be mixed.

* ethsft's own keys are the dataclass fields below; each carries its help (and choices) in its metadata, as TRL's
  fields do. ``ethsft train --help-config`` prints every key with its help.
* Every other ``SFTConfig`` field is accepted under ``training`` (or ``logging``, ``optimization``, ``data``, or
  flat) and passed to ``SFTConfig`` unchanged: TRL documents and validates it. The same holds for every
  ``LoraConfig`` field under ``lora`` and every ``BitsAndBytesConfig`` argument under ``quantization``.
* TRL's and peft's names for ethsft's keys are read as those keys wherever they are written (``training.report_to``
  is ``logging.report_to``; ``lora.lora_r`` and ``lora_r`` are ``lora.r``). Names that TRL or transformers renamed
  or removed are mapped to today's with a one-line notice.

Precedence: built-in defaults (the guide's QLoRA recipe, not TRL's defaults where they differ) < YAML < command
line. Values are type- and range-checked as they are set, the error naming the file or flag and the key; an
unknown key fails before any model loads, naming the closest key of any section.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import math
import sys
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml


class ConfigError(ValueError):
    """A config problem found before any model loads."""


def _key(default=None, help: str = "", choices=None, factory=None):
    """A documented field, as TRL writes its config fields."""
    metadata = {"help": help, **({"choices": sorted(choices, key=str)} if choices else {})}
    if factory is not None:
        return field(default_factory=factory, metadata=metadata)
    return field(default=default, metadata=metadata)


@dataclass
class ModelArgs:
    base_model: str = _key("mistralai/Mistral-7B-Instruct-v0.2",
                           "Hub id, local path, or an embedded model (`embedded:tiny-mistral`, `embedded:smollm2-135m`). "
                           "TRL's `model_name_or_path`.")
    cache_dir: str | None = _key("./models/base", "Where Hub downloads go.")
    revision: str | None = _key(None, "Hub revision (branch, tag or commit). TRL's `model_revision`.")
    attn_implementation: str = _key(
        "sdpa", "Attention kernel; flash_attention_2/3 and flex_attention fall back to sdpa with a notice where "
                "they are not installed.",
        choices={"sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention"})
    chat_template: str = _key("auto", "`auto` (the tokenizer's own, else the packaged Mistral one, with a notice), "
                                      "`mistral`, `none` (fail if the tokenizer has none) or a path to a .jinja file.")
    trust_remote_code: bool = _key(False, "Run code shipped with a Hub model.")


@dataclass
class LoraArgs:
    r: int = _key(16, "LoRA rank. peft's `r`, TRL's `lora_r`.")
    alpha: int = _key(32, "LoRA scaling numerator. peft's and TRL's `lora_alpha`.")
    dropout: float = _key(0.05, "Dropout on the adapters' input. peft's and TRL's `lora_dropout`.")
    target_modules: list[str] | str = _key(
        help="Module names to adapt, or `all-linear`. TRL's `lora_target_modules`. Checked against the model's "
             "module names (from its config, no weights loaded) before training.",
        factory=lambda: ["q_proj", "v_proj"])
    bias: str = _key("none", "Which biases train.", choices={"none", "all", "lora_only"})
    task_type: str = _key("CAUSAL_LM", "peft's task type. TRL's `lora_task_type`.")
    use_dora: bool = _key(False, "Weight-decomposed LoRA (DoRA).")
    use_rslora: bool = _key(False, "Rank-stabilized scaling, alpha / sqrt(r).")
    modules_to_save: list[str] | None = _key(None, "Whole modules trained beside the adapters (e.g. [lm_head]); saved "
                                                   "with the adapter. TRL's `lora_modules_to_save`.")
    top_layers: int | None = _key(None, "Adapters on the last N decoder layers only: backward stops below them (on "
                                        "CPU the demo's 10 of SmolLM2's 30 layers train ~1.8x faster). Needs a list "
                                        "of target_modules. None: every layer.")
    extra: dict = field(default_factory=dict, metadata={"passthrough": "LoraConfig"})


@dataclass
class QuantizationArgs:
    load_in_4bit: bool = _key(True, "Load the base model in 4-bit (QLoRA). False: bf16/fp16 LoRA.")
    bnb_4bit_compute_dtype: str = _key("bfloat16", "dtype of the 4-bit matmuls (and of the model without 4-bit).",
                                       choices={"bfloat16", "float16", "float32"})
    bnb_4bit_quant_type: str = _key("nf4", "4-bit data type.", choices={"nf4", "fp4"})
    bnb_4bit_use_double_quant: bool = _key(True, "Quantize the quantization constants too. TRL's "
                                                 "`use_bnb_nested_quant`.")
    bnb_4bit_quant_storage: str | None = _key(None, "Storage dtype of the packed weights (None: uint8). Set it to the "
                                                    "compute dtype for DeepSpeed ZeRO-3, which shards by dtype.",
                                              choices={None, "uint8", "bfloat16", "float16", "float32"})
    extra: dict = field(default_factory=dict, metadata={"passthrough": "BitsAndBytesConfig"})


@dataclass
class TrainingArgs:
    output_dir: str = _key("models/fine-tuned/eth-intent-extractor-v1", "Where the run writes (`--output`).")
    num_train_epochs: float = _key(3, "Passes over the training split.")
    max_steps: int = _key(-1, "Optimizer steps; -1: train for num_train_epochs.")
    per_device_train_batch_size: int = _key(1, "Micro batch per device (`--batch-size`).")
    per_device_eval_batch_size: int = _key(1, "Micro batch per device for evaluation.")
    gradient_accumulation_steps: int = _key(16, "Micro batches per optimizer step.")
    learning_rate: float = _key(2e-4, "Peak learning rate.")
    weight_decay: float = _key(0.0, "AdamW weight decay.")
    max_grad_norm: float = _key(0.3, "Gradient clipping norm.")
    warmup_steps: float = _key(0.03, "Warm-up: an int is steps, a float < 1 a fraction of all steps (the guide's "
                                     "warmup_ratio maps here).")
    lr_scheduler_type: str = _key("cosine", "transformers' scheduler name (linear, cosine, constant, ...).")
    seed: int = _key(42, "Seed for weights, data order and dropout (also TRL's data_seed).")
    early_stopping_patience: int | None = _key(None, "Stop after this many evaluations without improvement of "
                                                     "metric_for_best_model. None: off.")
    overwrite: bool = _key(False, "Train into an output folder that holds an earlier ethsft run (`--overwrite`).")
    push_to_hub: bool = _key(False, "After a successful run (main process), push the adapter, tokenizer, chat "
                                    "template, loss plot and a model card; token from HF_TOKEN or `hf auth login`.")
    hub_model_id: str | None = _key(None, "[user-or-org/]name of the Hub repo; None: the output folder's name under "
                                          "the token's user.")
    hub_private_repo: bool = _key(True, "Create the repo private (a repo that exists keeps its visibility).")
    extra: dict = field(default_factory=dict, metadata={"passthrough": "SFTConfig"})


@dataclass
class DataArgs:
    dataset_dir: str = _key("data/datasets", "A folder of train/validation/test.jsonl, a save_to_disk folder, or a Hub "
                                             "dataset id (`--dataset`; TRL's `dataset_name`).")
    dataset_config: str | None = _key(None, "The Hub dataset's configuration (load_dataset's second argument).")
    train_split: str = _key("train", "Name of the training split. TRL's `dataset_train_split`.")
    validation_split: str = _key("validation", "Name of the split evaluated during training. TRL's "
                                               "`dataset_test_split`.")
    test_split: str = _key("test", "Name of the held-out split `ethsft evaluate` scores.")
    max_length: int = _key(2048, "Tokens per sample (the guide's max_seq_length).")
    dataset_text_field: str = _key("text", "The text column of a plain-text dataset.")
    system_prompt: str | None = _key(None, "A system message for every sample (folded into the first [INST] for "
                                           "Mistral); None keeps the template's default.")
    packing: bool = _key(False, "Pack samples into max_length rows (no attention across samples).")
    overlong: str = _key("truncate", "Samples longer than max_length: truncate (cut the prompt's middle, keep the "
                                     "answer whole) or drop. Always counted.", choices={"truncate", "drop"})


@dataclass
class OptimizationArgs:
    gradient_checkpointing: bool = _key(True, "Recompute activations in backward (less memory, ~30% slower).")
    optim: str = _key("paged_adamw_32bit", "transformers' optimizer name; paged_* falls back to its unpaged twin "
                                           "on CPU.")
    fp16: bool = _key(False, "float16 mixed precision.")
    bf16: bool = _key(True, "bfloat16 mixed precision (falls back to fp16 with a notice where the GPU lacks it; "
                            "fp32 on CPU).")
    cpu_bf16: bool = _key(False, "On CPU, train under bfloat16 autocast where the processor computes bf16 natively "
                                 "(AVX512-BF16, AMX): ~1.7x faster on SmolLM2-135M.")
    use_liger_kernel: bool | str = _key(False, "Liger kernels: true, false or auto (on where liger-kernel is "
                                               "installed and a GPU is present).")
    fast_path: bool = _key(False, "ethsft's fast path (ethsft/fastpath/): packed rows attend per sample through "
                                  "FlashAttention varlen, lean LoRA dropout and SwiGLU. Same math, less memory/time.")
    compile: bool = _key(False, "With fast_path: torch.compile each decoder layer (4-bit weights dequantised inside "
                                "it); the first steps pay the compilation.")
    cuda_graphs: bool = _key(False, "With fast_path and packing on one GPU: replay each max_length micro-batch as "
                                    "CUDA graphs (no host time per layer). Logs the loss only.")
    vram_budget_gib: float | None = _key(None, "With fast_path on a GPU: checkpoint only as many decoder layers as "
                                               "keep the measured peak under this many GiB.")


@dataclass
class LoggingArgs:
    logging_steps: int = _key(10, "Log every N steps.")
    save_strategy: str = _key("steps", "When to save checkpoints.", choices={"no", "steps", "epoch", "best"})
    save_steps: int = _key(500, "Save every N steps (save_strategy: steps).")
    eval_strategy: str = _key("steps", "When to evaluate.", choices={"no", "steps", "epoch"})
    eval_steps: int = _key(500, "Evaluate every N steps (eval_strategy: steps).")
    save_total_limit: int | None = _key(3, "Checkpoints kept (the best one always).")
    load_best_model_at_end: bool = _key(True, "Save the best checkpoint's adapter as the run's.")
    metric_for_best_model: str = _key("eval_loss", "eval_loss, a TRL eval metric, or an intent metric "
                                                   "(eval_intent_field_accuracy, ...; needs eval_accuracy_samples).")
    report_to: list[str] | str = _key("none", "none, tensorboard, wandb, mlflow, or a list; an uninstalled tracker "
                                              "is skipped with a notice.")
    eval_accuracy_samples: int = _key(0, "At each evaluation, generate on this many validation records (a fixed "
                                         "subset) and log intent accuracy beside eval_loss. 0: off.")


@dataclass
class Settings:
    model: ModelArgs = field(default_factory=ModelArgs)
    lora: LoraArgs = field(default_factory=LoraArgs)
    quantization: QuantizationArgs = field(default_factory=QuantizationArgs)
    training: TrainingArgs = field(default_factory=TrainingArgs)
    data: DataArgs = field(default_factory=DataArgs)
    optimization: OptimizationArgs = field(default_factory=OptimizationArgs)
    logging: LoggingArgs = field(default_factory=LoggingArgs)
    given: set = field(default_factory=set, repr=False, compare=False)  # (section, key) a file or flag set

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """Sections of keys, with the passed-through library fields among their section's own keys."""
        out = {}
        for name in SECTIONS:
            values = dataclasses.asdict(getattr(self, name))
            passed = values.pop("extra", {})
            out[name] = {**values, **passed}
        return out


_SECTION_CLASSES = {k: v for k, v in get_type_hints(Settings).items() if k != "given"}
SECTIONS = list(_SECTION_CLASSES)


def own_keys(section: str) -> dict[str, dataclasses.Field]:
    """ethsft's own keys of ``section`` (the pass-through ``extra`` left out)."""
    return {f.name: f for f in fields(_SECTION_CLASSES[section]) if f.name != "extra"}


# ethsft key -> its section; every key name is used by one section only
HOME = {key: section for section in SECTIONS for key in own_keys(section)}
assert len(HOME) == sum(len(own_keys(s)) for s in SECTIONS), "a key name is used in two sections"

# Sections whose unknown keys may be SFTConfig fields (TRL users write them where they like).
SFT_SECTIONS = ("training", "logging", "optimization", "data")
PASSTHROUGH = {"training": "SFTConfig", "lora": "LoraConfig", "quantization": "BitsAndBytesConfig"}

# (section, old key) -> (section, new key, why): names TRL/transformers renamed or removed. Said in a notice.
LEGACY_KEYS = {
    ("logging", "evaluation_strategy"): ("logging", "eval_strategy", "transformers 5 renamed it"),
    ("training", "evaluation_strategy"): ("logging", "eval_strategy", "transformers 5 renamed it"),
    ("training", "warmup_ratio"): ("training", "warmup_steps", "transformers 5 removed it; a float < 1 in warmup_steps is a ratio"),
    ("data", "max_seq_length"): ("data", "max_length", "TRL 1.x renamed it"),
    ("training", "max_seq_length"): ("data", "max_length", "TRL 1.x renamed it"),
    ("model", "torch_dtype"): ("quantization", "bnb_4bit_compute_dtype", "ethsft computes in the quantization dtype"),
    ("model", "dtype"): ("quantization", "bnb_4bit_compute_dtype", "ethsft computes in the quantization dtype"),
}

# TRL's ModelConfig / ScriptArguments and peft's names for ethsft's keys, read silently as those keys. A name
# without a section is a flat recipe's (TRL's `trl sft --config` file); it is also accepted under "model" (the
# ModelConfig names) or "data" (the ScriptArguments names).
TRL_NAMES = {
    "model_name_or_path": ("model", "base_model"),
    "model_revision": ("model", "revision"),
    "lora_r": ("lora", "r"),
    "lora_alpha": ("lora", "alpha"),
    "lora_dropout": ("lora", "dropout"),
    "lora_target_modules": ("lora", "target_modules"),
    "lora_modules_to_save": ("lora", "modules_to_save"),
    "lora_task_type": ("lora", "task_type"),
    "lora_target_parameters": ("lora", "target_parameters"),  # a LoraConfig field: passed through
    "use_bnb_nested_quant": ("quantization", "bnb_4bit_use_double_quant"),
    "load_in_8bit": ("quantization", "load_in_8bit"),  # a BitsAndBytesConfig argument: passed through
    "dataset_name": ("data", "dataset_dir"),
    "dataset_train_split": ("data", "train_split"),
    "dataset_test_split": ("data", "validation_split"),
}
# Flat recipe keys that ethsft reads as a check only.
SCRIPT_ONLY = {"use_peft", "dataset_streaming", "ignore_bias_buffers"}

# SFTConfig fields ethsft's pipeline decides itself: set, they would break it.
OWNED = {
    "assistant_only_loss": "ethsft tokenizes every dataset format itself, with the loss on assistant turns and "
                           "completions already",
    "dataset_kwargs": "ethsft hands TRL tokenized rows",
}

_RANGE_RULES = {
    "positive": (lambda v: v > 0, "must be positive"),
    "non-negative": (lambda v: v >= 0, "must be >= 0"),
    "fraction": (lambda v: 0 <= v < 1, "must be >= 0 and < 1"),
    "steps": (lambda v: v == -1 or v > 0, "must be -1 (train for num_train_epochs) or positive"),
}
# (section, key) -> the range a number must lie in; None (where the key allows it) means "off" and is not checked.
RANGES = {
    **dict.fromkeys([("lora", "r"), ("lora", "alpha"), ("lora", "top_layers"),
                     ("training", "per_device_train_batch_size"), ("training", "per_device_eval_batch_size"),
                     ("training", "gradient_accumulation_steps"), ("training", "num_train_epochs"),
                     ("training", "learning_rate"), ("training", "early_stopping_patience"),
                     ("data", "max_length"), ("logging", "logging_steps"), ("logging", "save_steps"),
                     ("logging", "eval_steps"), ("logging", "save_total_limit"),
                     ("optimization", "vram_budget_gib")], "positive"),
    **dict.fromkeys([("training", "weight_decay"), ("training", "max_grad_norm"), ("training", "seed"),
                     ("training", "warmup_steps"), ("logging", "eval_accuracy_samples")], "non-negative"),
    ("lora", "dropout"): "fraction",
    ("training", "max_steps"): "steps",
}

# What a run logs at each evaluation, for metric_for_best_model: TRL's SFT metrics and ethsft's intent scores
# (``evaluation.metrics.headline``), each with the ``eval_`` prefix transformers adds when it is left out.
EVAL_METRICS = ("loss", "mean_token_accuracy", "entropy", "num_tokens")
INTENT_METRICS = ("intent_valid_json", "intent_exact_match", "intent_field_accuracy", "intent_action_accuracy",
                  "intent_protocol_accuracy")

MAX_CONFIG_BYTES = 1 << 20  # a config is a few KB; a bigger file is not a config
MAX_CONFIG_NODES = 100_000  # YAML aliases can expand a small file into billions of nodes


def notice(message: str) -> None:
    print(f"ethsft: {message}", file=sys.stderr)


# --- the libraries' own fields --------------------------------------------------------------------------------

@functools.cache
def library_fields(name: str) -> dict[str, Any]:
    """``{field: type annotation}`` of SFTConfig, LoraConfig or BitsAndBytesConfig (imported only when needed)."""
    if name == "SFTConfig":
        from trl import SFTConfig

        return {f.name: get_type_hints(SFTConfig).get(f.name, Any) for f in fields(SFTConfig) if f.init}
    if name == "LoraConfig":
        from peft import LoraConfig

        return {f.name: get_type_hints(LoraConfig).get(f.name, Any) for f in fields(LoraConfig) if f.init}
    import inspect

    from transformers import BitsAndBytesConfig

    params = inspect.signature(BitsAndBytesConfig.__init__).parameters
    return {k: (p.annotation if p.annotation is not inspect.Parameter.empty else Any)
            for k, p in params.items() if k not in ("self", "kwargs")}


def library_help(name: str) -> dict[str, str]:
    """``{field: help}`` from the library's own field metadata (SFTConfig, LoraConfig) or docstring (bitsandbytes)."""
    if name in ("SFTConfig", "LoraConfig"):
        import peft
        import trl

        cls = trl.SFTConfig if name == "SFTConfig" else peft.LoraConfig
        return {f.name: " ".join(str(f.metadata.get("help", "")).split()) for f in fields(cls) if f.init}
    import re

    from transformers import BitsAndBytesConfig

    doc = BitsAndBytesConfig.__doc__ or ""
    found = {}
    for key in library_fields(name):
        m = re.search(rf"^\s+{key} \(.*?\):\n(.*?)(?=^\s+\w+ \(|\Z)", doc, re.S | re.M)
        found[key] = " ".join(m.group(1).split()) if m else ""
    return found


def _candidates() -> list[str]:
    """Every ``section.key`` a config may set, for did-you-mean hints."""
    names = [f"{HOME[k]}.{k}" for k in HOME]
    names += [f"{s}.{k}" for (s, k) in LEGACY_KEYS] + [f"{s}.{k}" for k, (s, _) in TRL_NAMES.items()]
    for section, lib in PASSTHROUGH.items():
        try:
            names += [f"{section}.{k}" for k in library_fields(lib)]
        except ImportError:  # the hint is still useful without a library
            pass
    return sorted(set(names))


_SYNONYMS = {"rank": ("lora", "r"), "lora_rank": ("lora", "r"), "epochs": ("training", "num_train_epochs"),
             "lr": ("training", "learning_rate"), "batch_size": ("training", "per_device_train_batch_size")}


def _closest(section: str | None, key: str) -> str:
    """The closest valid key: same section first (printed bare), else any section (printed as section.key)."""
    if key in HOME:
        return f"{HOME[key]}.{key}" if HOME[key] != section else key
    if key in _SYNONYMS:
        home, name = _SYNONYMS[key]
        return name if home == section else f"{home}.{name}"
    if key in TRL_NAMES:
        return ".".join(TRL_NAMES[key])
    everything = _candidates()
    if section is not None:
        same = [c.split(".", 1)[1] for c in everything if c.startswith(section + ".")]
        match = difflib.get_close_matches(key, same, n=1, cutoff=0.6)
        if match:
            return match[0]
    by_key = {c.split(".", 1)[1]: c for c in everything}
    match = difflib.get_close_matches(key, list(by_key), n=1, cutoff=0.0)
    return by_key[match[0]] if match else ""


# --- setting one key ------------------------------------------------------------------------------------------

def _coerce(where: str, value: Any, annotation: Any, from_cli: bool) -> Any:
    """Check (and for command-line strings, parse) ``value`` against a field's type annotation."""
    options = list(get_args(annotation)) if get_origin(annotation) in (types.UnionType, typing.Union) else [annotation]
    if value is None:
        if type(None) in options or Any in options:
            return None
        raise ConfigError(f"{where} must not be empty")
    base = [get_origin(t) or t for t in options if t is not type(None)]
    if Any in base:
        return yaml.safe_load(value) if from_cli and isinstance(value, str) else value
    known = {bool, int, float, str, list, dict}
    if from_cli and isinstance(value, str) and (
            str not in base or ((list in base or dict in base) and value.lstrip()[:1] in ("[", "{"))):
        try:  # a list key that also takes a string (target_modules: [..] or all-linear) reads [..] as a list
            value = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"{where}: cannot read {value!r} ({e.problem})") from None
    if bool in base:
        if isinstance(value, bool):
            return value
        if str not in base and not any(t not in known for t in base):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
    number = None
    if int in base and isinstance(value, int) and not isinstance(value, bool):
        number = value
    elif float in base and isinstance(value, (int, float)) and not isinstance(value, bool):
        number = float(value) if int not in base else value
    elif isinstance(value, str) and (int in base or float in base):
        try:
            number = int(value) if int in base and value.strip().lstrip("+-").isdigit() else float(value)
        except ValueError:
            pass
    if number is not None:
        if not math.isfinite(number):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        return number
    if list in base and isinstance(value, list):
        item = next((get_args(t) for t in options if get_origin(t) is list), ())
        if item != (str,) or all(isinstance(v, str) for v in value):
            return value
    if dict in base and isinstance(value, dict):
        return value
    if str in base and isinstance(value, str):
        return value
    if any(t not in known for t in base):  # an enum or another class the library converts itself
        return value
    wanted = " or ".join(getattr(t, "__name__", str(t)) for t in base)
    raise ConfigError(f"{where} must be {wanted}, got {value!r}")


def _route(section: str, key: str, source: str) -> tuple[str, str, str | None]:
    """Where ``section.key`` lives: (section, key, library) with library set for a passed-through field."""
    if (section, key) in LEGACY_KEYS:
        new_section, new_key, why = LEGACY_KEYS[(section, key)]
        notice(f"{source}: {section}.{key} is now {new_section}.{new_key} ({why}); using it as {new_section}.{new_key}")
        return _route(new_section, new_key, source)
    if key in TRL_NAMES and key not in own_keys(section):
        home, name = TRL_NAMES[key]
        if section in (home, "model", "data"):
            if name != key:
                return _route(home, name, source)
            section = home  # the same name, a library field of that section (load_in_8bit, target_parameters)
    if key in own_keys(section):
        return section, key, None
    if section in SFT_SECTIONS and key in library_fields("SFTConfig"):
        if key in HOME:  # an SFTConfig field ethsft keeps in another section (training.report_to)
            return HOME[key], key, None
        if key in OWNED:
            raise ConfigError(f"{source}: {section}.{key}: {OWNED[key]}; remove it")
        return "training", key, "SFTConfig"
    if section == "model" and HOME.get(key) in ("quantization", "lora"):  # ModelConfig's load_in_4bit, use_dora, ...
        return HOME[key], key, None
    for home, lib in (("lora", "LoraConfig"), ("quantization", "BitsAndBytesConfig")):
        if section in (home, "model") and key in library_fields(lib):
            return home, key, lib
    hint = _closest(section, key)
    raise ConfigError(f"{source}: unknown key '{key}' in section '{section}'" + (f" (did you mean '{hint}'?)"
                                                                                 if hint else ""))


def _set(settings: Settings, section: str, key: str, value: Any, source: str, from_cli: bool = False) -> None:
    if section not in _SECTION_CLASSES:
        match = difflib.get_close_matches(section, SECTIONS, n=1, cutoff=0.0)
        raise ConfigError(f"{source}: unknown section '{section}' (did you mean '{match[0]}'?); "
                          f"sections are: {', '.join(SECTIONS)}")
    if key in SCRIPT_ONLY and section in ("model", "data"):
        _script_only(key, value, source)
        return
    section, key, library = _route(section, key, source)
    where = f"{source}: {section}.{key}"
    if library is not None:
        value = _coerce(where, value, library_fields(library)[key], from_cli)
        getattr(settings, section).extra[key] = value
        return
    value = _coerce(where, value, get_type_hints(_SECTION_CLASSES[section])[key], from_cli)
    rule = RANGES.get((section, key))
    if rule is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        ok, must = _RANGE_RULES[rule]
        if not ok(value):
            raise ConfigError(f"{source}: {section}.{key} {must}, got {value!r}")
    choices = own_keys(section)[key].metadata.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{source}: {section}.{key} must be one of "
                          f"{', '.join(str(c) for c in choices)}; got {value!r}")
    setattr(getattr(settings, section), key, value)
    settings.given.add((section, key))


def _script_only(key: str, value: Any, source: str) -> None:
    if key == "use_peft" and value in (False, "false", "False"):
        raise ConfigError(f"{source}: use_peft: false asks for full fine-tuning; ethsft trains LoRA adapters "
                          "(QLoRA by default): remove use_peft, or set quantization.load_in_4bit: false for bf16 LoRA")
    if key == "dataset_streaming" and value in (True, "true", "True"):
        raise ConfigError(f"{source}: dataset_streaming: ethsft reads the whole dataset to count and cut overlong "
                          "samples; remove it")


def set_flat(settings: Settings, key: str, value: Any, source: str, from_cli: bool = False) -> None:
    """A key without a section, as a flat TRL recipe has them: TRL's script/model names, ethsft's own keys (each
    name is used by one section), or an SFTConfig field."""
    if key in SCRIPT_ONLY:
        _script_only(key, value, source)
        return
    section = flat_section(key)
    if section is None:
        hint = _closest(None, key)
        raise ConfigError(f"{source}: unknown key '{key}'" + (f" (did you mean '{hint}'?)" if hint else ""))
    _set(settings, section, key, value, source, from_cli)


def flat_section(key: str) -> str | None:
    """The section a key written without one belongs to, or None: a legacy name's, a TRL name's, ethsft's own key's
    (each name is used by one section), an SFTConfig field (training) or a LoraConfig field (lora)."""
    legacy = next((section for section, old in LEGACY_KEYS if old == key), None)
    if legacy is not None:
        return legacy
    if key in TRL_NAMES:
        return TRL_NAMES[key][0]
    if key in HOME:
        return HOME[key]
    if key in library_fields("SFTConfig"):
        return "training"
    if key in library_fields("LoraConfig"):
        return "lora"
    return None


def apply_mapping(settings: Settings, data: dict, source: str) -> Settings:
    """Apply a config mapping: sections of keys (the guide's layout), flat keys (a TRL recipe), or both."""
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections (model, lora, ...) or of TRL recipe keys "
                          f"(model_name_or_path, learning_rate, ...), got {type(data).__name__}")
    for name, values in data.items():
        if name in _SECTION_CLASSES and (values is None or isinstance(values, dict)):
            for key, value in (values or {}).items():
                _set(settings, name, str(key), value, source)
        elif isinstance(values, dict) and name not in SCRIPT_ONLY and flat_section(str(name)) is None:
            match = difflib.get_close_matches(str(name), SECTIONS, n=1, cutoff=0.6)
            hint = f" (did you mean '{match[0]}'?)" if match else ""
            raise ConfigError(f"{source}: unknown section '{name}'{hint}; sections are: {', '.join(SECTIONS)}")
        else:
            set_flat(settings, str(name), values, source)
    return settings


# --- reading files --------------------------------------------------------------------------------------------

class _StrictLoader(yaml.SafeLoader):
    """safe_load that refuses a key written twice in one mapping."""

    def construct_mapping(self, node, deep=False):
        seen = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                raise ConfigError(f"line {key_node.start_mark.line + 1}: key '{key}' appears twice (first on line "
                                  f"{seen[key] + 1}); keep one")
            seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep)


def read_yaml(path: Path) -> Any:
    """A config file's YAML, refused in one line naming the file when it is not a config."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise ConfigError(f"{path}: cannot read ({e.strerror})") from None
    if size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: {size:,} bytes is not a config (at most {MAX_CONFIG_BYTES:,})")
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[:e.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not valid UTF-8 (byte {raw[e.start:e.start + 1]!r}); save the config as "
                          "UTF-8") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 (a SafeLoader)
        if _expanded_size(data, {}) > MAX_CONFIG_NODES:
            raise ConfigError(f"its aliases expand to more than {MAX_CONFIG_NODES:,} values; a config is a few dozen "
                              "keys")
        return data
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None


def _expanded_size(obj: Any, memo: dict) -> float:
    """How many values ``obj`` holds once every alias is expanded, counted without expanding (shared parts once)."""
    key = id(obj)
    if key in memo:
        return memo[key]
    if not isinstance(obj, (dict, list)):
        return 1
    memo[key] = math.inf  # a structure that contains itself never ends
    items = list(obj.values()) if isinstance(obj, dict) else obj
    memo[key] = 1 + sum(_expanded_size(v, memo) for v in items) + (len(obj) if isinstance(obj, dict) else 0)
    return memo[key]


def load_settings(config_path_or_name: str | Path | None = None, overrides: dict[str, Any] | None = None,
                  sets: list[str] | tuple[str, ...] = ()) -> Settings:
    """Defaults < YAML file < ``overrides`` ({"section.key": value}) < ``--set [section.]key=value`` strings."""
    settings = Settings()
    if config_path_or_name is not None:
        from ethsft.config.presets import resolve_config_path

        path = resolve_config_path(config_path_or_name)
        apply_mapping(settings, read_yaml(path) or {}, str(path))
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        _set(settings, section, key, value, f"--{key.replace('_', '-')}")
    for item in sets:
        dotted, eq, value = item.partition("=")
        dotted = dotted.strip()
        if not eq or not dotted:
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. --set lora.r=32")
        section, dot, key = dotted.partition(".")
        if dot:
            _set(settings, section, key.strip(), value, f"--set {dotted}", from_cli=True)
        else:
            set_flat(settings, dotted, value, f"--set {dotted}", from_cli=True)
    validate(settings)
    return settings


# --- rules across keys ----------------------------------------------------------------------------------------

def repo_id_problem(repo_id: str | None) -> str | None:
    """Why ``repo_id`` cannot name a Hub model repo, or None."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo_id or "")
    except HFValidationError:
        return (f"{repo_id!r} is not a Hub repo id: expected [user-or-org/]name of letters, digits, '-', '_' and '.' "
                "(at most 96 characters each, no '--' or '..'), e.g. my-name/eth-intent-extractor")
    return None


def validate(s: Settings) -> None:
    """Cross-key rules that a single key's type cannot express."""
    if s.optimization.fp16 and s.optimization.bf16:
        raise ConfigError("optimization.fp16 and optimization.bf16 are both true; choose one")
    if s.lora.top_layers is not None and isinstance(s.lora.target_modules, str):
        raise ConfigError(f"lora.top_layers needs lora.target_modules as a list of module names, not "
                          f"{s.lora.target_modules!r} (peft cannot restrict a pattern to some layers); e.g. "
                          "[q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]")
    if isinstance(s.optimization.use_liger_kernel, str) and s.optimization.use_liger_kernel != "auto":
        raise ConfigError(f"optimization.use_liger_kernel must be true, false or auto, got "
                          f"{s.optimization.use_liger_kernel!r}")
    if s.optimization.cuda_graphs and not (s.optimization.fast_path and s.data.packing):
        raise ConfigError("optimization.cuda_graphs needs optimization.fast_path: true and data.packing: true (the "
                          "graphs replay packed rows of data.max_length tokens); set optimization.cuda_graphs: false")
    if s.training.hub_model_id is not None:
        problem = repo_id_problem(s.training.hub_model_id)
        if problem:
            raise ConfigError(f"training.hub_model_id: {problem}")
    metric = s.logging.metric_for_best_model
    bare = metric.removeprefix("eval_")
    if bare not in EVAL_METRICS + INTENT_METRICS:
        raise ConfigError(f"logging.metric_for_best_model={metric} is not logged by this run; choose one of "
                          + ", ".join(f"eval_{m}" for m in EVAL_METRICS + INTENT_METRICS))
    if bare.startswith("intent_") and s.logging.eval_accuracy_samples <= 0:
        raise ConfigError(f"logging.metric_for_best_model={metric} is an intent metric: "
                          "set logging.eval_accuracy_samples > 0 so it is computed")
    if s.logging.eval_strategy == "no" and ("logging", "load_best_model_at_end") not in s.given:
        s.logging.load_best_model_at_end = False  # TRL's default; ethsft's (on) needs evaluation
    if s.logging.load_best_model_at_end and s.logging.eval_strategy == "no":
        raise ConfigError("logging.load_best_model_at_end needs evaluation: set logging.eval_strategy to steps or epoch")
    if s.logging.load_best_model_at_end and s.logging.save_strategy not in (s.logging.eval_strategy, "best"):
        raise ConfigError(f"logging.load_best_model_at_end needs logging.save_strategy ({s.logging.save_strategy}) "
                          f"to match logging.eval_strategy ({s.logging.eval_strategy})")


def dump_yaml(settings: Settings) -> str:
    return yaml.safe_dump(settings.to_dict(), sort_keys=False)


def help_text() -> str:
    """Every key a config may set, with its help: ethsft's own, then SFTConfig's, LoraConfig's and bitsandbytes'."""
    import textwrap

    def entry(name: str, default: Any, text: str) -> str:
        head = f"  {name} [{default!r}]" if default is not dataclasses.MISSING else f"  {name}"
        body = textwrap.fill(text, 100, initial_indent=" " * 6, subsequent_indent=" " * 6) if text else ""
        return head + ("\n" + body if body else "")

    out = ["ethsft config keys (YAML sections, `--set section.key=value`; a flat TRL recipe may leave sections out)."]
    for section in SECTIONS:
        out.append(f"\n{section}:")
        for name, f in own_keys(section).items():
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            text = f.metadata.get("help", "")
            if f.metadata.get("choices"):
                text += " Choices: " + ", ".join(str(c) for c in f.metadata["choices"]) + "."
            out.append(entry(name, default, text))
    out.append("\n" + textwrap.fill("TRL / peft names read as the keys above: " + ", ".join(
        f"{k} -> {s}.{v}" for k, (s, v) in TRL_NAMES.items()) + ".", 110))
    for section, lib in PASSTHROUGH.items():
        ours = set(HOME)
        out.append(f"\n{section} (any other {lib} field, passed through; help from {lib}):")
        helps = library_help(lib)
        for name in sorted(library_fields(lib)):
            if name not in ours and name not in OWNED:
                out.append(entry(name, dataclasses.MISSING, helps.get(name, "")))
    return "\n".join(out)


def reference_markdown() -> str:
    """ethsft's own keys as markdown tables, one per section, from the fields' help (docs/configuration.md holds it;
    a test keeps the two equal)."""
    out = []
    for section in SECTIONS:
        out += [f"### `{section}`", "", "| key | default | help |", "| --- | --- | --- |"]
        for name, f in own_keys(section).items():
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            text = f.metadata.get("help", "")
            if f.metadata.get("choices"):
                text += " Choices: " + ", ".join(f"`{c}`" for c in f.metadata["choices"]) + "."
            out.append(f"| `{name}` | `{default!r}` | {text.replace('|', '&#124;')} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"
