"""The one config schema: YAML sections -> validated settings -> SFTConfig, LoraConfig, BitsAndBytesConfig.

Sections and keys follow the fine-tuning guide's ``configs/training_config.yaml``. Precedence is
built-in defaults < YAML < command line. Keys renamed or removed by transformers 5 / TRL 1.x are
mapped to today's names with a one-line notice; an unknown key fails before any model loads, naming
the key, its section and the closest valid key. Numbers are range-checked as they are set (``RANGES``: batch
sizes, accumulation, max_length, lora r/alpha, steps and epochs must be positive), the error naming the file or
flag and the key, so ``per_device_train_batch_size: -1`` fails at ``--dry-run`` instead of after the model loads.

Every key, by section (defaults in brackets):

model
  base_model [mistralai/Mistral-7B-Instruct-v0.2]  hub id, local path, or ``embedded:tiny-mistral``
  cache_dir [./models/base]       where hub downloads go
  revision [None]                 hub revision (branch, tag or commit)
  attn_implementation [sdpa]      sdpa | eager | flash_attention_2 | flex_attention (falls back to sdpa with a notice)
  chat_template [auto]            auto (tokenizer's own, else the packaged Mistral one, with a notice) | mistral |
                                  none (fail if the tokenizer has none) | path to .jinja
  trust_remote_code [False]       run code shipped with a hub model; off unless set
lora
  r [16], alpha [32], dropout [0.05], target_modules [[q_proj, v_proj]] (list or "all-linear"),
  bias [none], task_type [CAUSAL_LM], use_dora [False], use_rslora [False],
  modules_to_save [None]          whole modules trained beside the adapters (e.g. [lm_head]); saved with the adapter
  top_layers [None]               adapters on the last N decoder layers only: backward stops below them (on CPU
                                  the demo's 10 of SmolLM2's 30 layers train ~1.8x faster); needs a list of
                                  target_modules; None = every layer
quantization
  load_in_4bit [True], bnb_4bit_compute_dtype [bfloat16], bnb_4bit_quant_type [nf4],
  bnb_4bit_use_double_quant [True], bnb_4bit_quant_storage [None -> uint8; set to the compute dtype for ZeRO-3]
training
  output_dir [models/fine-tuned/eth-intent-extractor-v1], num_train_epochs [3], max_steps [-1],
  per_device_train_batch_size [1], per_device_eval_batch_size [1], gradient_accumulation_steps [16],
  learning_rate [2e-4], weight_decay [0.0], max_grad_norm [0.3], warmup_steps [0.03] (int = steps,
  float < 1 = fraction of all steps; the guide's warmup_ratio maps here), lr_scheduler_type [cosine],
  seed [42], early_stopping_patience [None], overwrite [False]
  push_to_hub [False]             after a successful run (main process), push the adapter, tokenizer, chat template,
                                  loss plot and a generated model card (README.md) to the Hugging Face Hub
                                  (ethsft/training/hub_push.py); the token comes from HF_TOKEN or `hf auth login`
  hub_model_id [None]             [user-or-org/]name of the Hub repo; None = the output folder's name under the
                                  token's user
  hub_private_repo [True]         create the repo private (a repo that exists keeps its visibility)
data
  dataset_dir [data/datasets]     folder with train.jsonl, validation.jsonl, test.jsonl; or a `datasets` folder
                                  written by save_to_disk; or a Hugging Face Hub dataset id (owner/name)
  dataset_config [None]           the Hub dataset's configuration (load_dataset's second argument)
  train_split [train], validation_split [validation], test_split [test]
                                  the split names in a save_to_disk folder or Hub dataset (JSONL: the file names)
  max_length [2048]               tokens per sample (the guide's max_seq_length)
  dataset_text_field [text]       only for plain-text datasets
  system_prompt [None]            folded into the first [INST], as Mistral does
  packing [False]                 pack samples into max_length rows (no attention across samples)
  overlong [truncate]             truncate | drop: what to do with samples longer than max_length (always counted)
optimization
  gradient_checkpointing [True], optim [paged_adamw_32bit], fp16 [False], bf16 [True] (falls back to fp16
  with a notice where the GPU lacks bf16; fp32 on CPU)
  cpu_bf16 [False]                on CPU, train under bfloat16 autocast (float32 master weights) where the processor
                                  computes bf16 natively (AVX512-BF16, AMX): ~1.7x faster on SmolLM2-135M; the tiny
                                  test models run faster in float32
  use_liger_kernel [False]        true | false | auto (on where liger-kernel is installed and a GPU is present)
  fast_path [False]               ethsft's fast path (ethsft/fastpath/): packed rows attend per sample through
                                  FlashAttention varlen, LoRA dropout keeps no copies, SwiGLU keeps half its
                                  activations (or Liger's), cuDNN SDPA off. Same math, less memory and time
  compile [False]                 with fast_path: torch.compile each decoder layer (fused elementwise kernels, far
                                  less Python per step, 4-bit NF4 weights dequantised inside the layer instead
                                  of through bitsandbytes' ops: ethsft/fastpath/nf4.py); the first steps pay the compilation.
                                  With cuda_graphs the graphs replay the compiled layers (the 12GB preset)
  cuda_graphs [False]             with fast_path and packing on a GPU: every micro-batch padded to max_length tokens
                                  and replayed as one CUDA graph forward and one backward (ethsft/fastpath/graphs.py): no
                                  host time per layer, so short rows (~2048 tokens, little activation memory) run
                                  at the GPU's speed. Logs the loss only (no token accuracy/entropy per step);
                                  one process (off, and said so, under DDP/DeepSpeed)
  vram_budget_gib [None]          with fast_path on a GPU: checkpoint only as many decoder layers as keep the
                                  peak (measured at start-up on the longest rows) under this many GiB; replaces
                                  gradient_checkpointing's all-or-nothing
logging
  logging_steps [10], save_strategy [steps], save_steps [500], eval_strategy [steps], eval_steps [500],
  save_total_limit [3], load_best_model_at_end [True], metric_for_best_model [eval_loss],
  report_to [none] (none | tensorboard | wandb | mlflow, or a list)
  eval_accuracy_samples [0]       at each evaluation, generate on this many validation records (a fixed
                                  subset) and log intent accuracy beside eval_loss; 0 turns it off
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

import yaml


class ConfigError(ValueError):
    """A config problem found before any model loads."""


@dataclass
class ModelArgs:
    base_model: str = "mistralai/Mistral-7B-Instruct-v0.2"
    cache_dir: str | None = "./models/base"
    revision: str | None = None
    attn_implementation: str = "sdpa"
    chat_template: str = "auto"
    trust_remote_code: bool = False


@dataclass
class LoraArgs:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] | str = field(default_factory=lambda: ["q_proj", "v_proj"])
    bias: str = "none"
    task_type: str = "CAUSAL_LM"
    use_dora: bool = False
    use_rslora: bool = False
    modules_to_save: list[str] | None = None
    top_layers: int | None = None


@dataclass
class QuantizationArgs:
    load_in_4bit: bool = True
    bnb_4bit_compute_dtype: str = "bfloat16"
    bnb_4bit_quant_type: str = "nf4"
    bnb_4bit_use_double_quant: bool = True
    bnb_4bit_quant_storage: str | None = None


@dataclass
class TrainingArgs:
    output_dir: str = "models/fine-tuned/eth-intent-extractor-v1"
    num_train_epochs: float = 3
    max_steps: int = -1
    per_device_train_batch_size: int = 1
    per_device_eval_batch_size: int = 1
    gradient_accumulation_steps: int = 16
    learning_rate: float = 2e-4
    weight_decay: float = 0.0
    max_grad_norm: float = 0.3
    warmup_steps: float = 0.03
    lr_scheduler_type: str = "cosine"
    seed: int = 42
    early_stopping_patience: int | None = None
    overwrite: bool = False
    push_to_hub: bool = False
    hub_model_id: str | None = None
    hub_private_repo: bool = True


@dataclass
class DataArgs:
    dataset_dir: str = "data/datasets"
    dataset_config: str | None = None
    train_split: str = "train"
    validation_split: str = "validation"
    test_split: str = "test"
    max_length: int = 2048
    dataset_text_field: str = "text"
    system_prompt: str | None = None
    packing: bool = False
    overlong: str = "truncate"


@dataclass
class OptimizationArgs:
    gradient_checkpointing: bool = True
    optim: str = "paged_adamw_32bit"
    fp16: bool = False
    bf16: bool = True
    cpu_bf16: bool = False
    use_liger_kernel: bool | str = False
    fast_path: bool = False
    compile: bool = False
    cuda_graphs: bool = False
    vram_budget_gib: float | None = None


@dataclass
class LoggingArgs:
    logging_steps: int = 10
    save_strategy: str = "steps"
    save_steps: int = 500
    eval_strategy: str = "steps"
    eval_steps: int = 500
    save_total_limit: int | None = 3
    load_best_model_at_end: bool = True
    metric_for_best_model: str = "eval_loss"
    report_to: list[str] | str = "none"
    eval_accuracy_samples: int = 0


@dataclass
class Settings:
    model: ModelArgs = field(default_factory=ModelArgs)
    lora: LoraArgs = field(default_factory=LoraArgs)
    quantization: QuantizationArgs = field(default_factory=QuantizationArgs)
    training: TrainingArgs = field(default_factory=TrainingArgs)
    data: DataArgs = field(default_factory=DataArgs)
    optimization: OptimizationArgs = field(default_factory=OptimizationArgs)
    logging: LoggingArgs = field(default_factory=LoggingArgs)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return dataclasses.asdict(self)


_SECTION_CLASSES = get_type_hints(Settings)
SECTIONS = list(_SECTION_CLASSES)

# (section, old key) -> (section, new key, why). The value carries over unchanged.
LEGACY_KEYS = {
    ("logging", "evaluation_strategy"): ("logging", "eval_strategy", "transformers 5 renamed it"),
    ("training", "evaluation_strategy"): ("logging", "eval_strategy", "transformers 5 renamed it"),
    ("training", "warmup_ratio"): ("training", "warmup_steps", "transformers 5 removed it; a float < 1 in warmup_steps is a ratio"),
    ("data", "max_seq_length"): ("data", "max_length", "TRL 1.x renamed it"),
    ("training", "max_seq_length"): ("data", "max_length", "TRL 1.x renamed it"),
    ("lora", "lora_alpha"): ("lora", "alpha", "ethsft's name for it"),
    ("lora", "lora_dropout"): ("lora", "dropout", "ethsft's name for it"),
    ("model", "model_name_or_path"): ("model", "base_model", "ethsft's name for it"),
    ("model", "torch_dtype"): ("quantization", "bnb_4bit_compute_dtype", "ethsft computes in the quantization dtype"),
}

VALID_CHOICES = {
    ("model", "attn_implementation"): {"sdpa", "eager", "flash_attention_2", "flash_attention_3", "flex_attention"},
    ("quantization", "bnb_4bit_quant_type"): {"nf4", "fp4"},
    ("quantization", "bnb_4bit_compute_dtype"): {"bfloat16", "float16", "float32"},
    ("quantization", "bnb_4bit_quant_storage"): {None, "uint8", "bfloat16", "float16", "float32"},
    ("lora", "bias"): {"none", "all", "lora_only"},
    ("data", "overlong"): {"truncate", "drop"},
    ("logging", "save_strategy"): {"no", "steps", "epoch", "best"},
    ("logging", "eval_strategy"): {"no", "steps", "epoch"},
}


# (section, key) -> the range a number must lie in; checked as each key is set, so the message names the file
# (or flag) it came from. None (where the key allows it) means "off" and is not checked.
RANGES = {
    **dict.fromkeys([("lora", "r"), ("lora", "alpha"), ("lora", "top_layers"),
                     ("training", "per_device_train_batch_size"), ("training", "per_device_eval_batch_size"),
                     ("training", "gradient_accumulation_steps"), ("training", "num_train_epochs"),
                     ("training", "learning_rate"), ("training", "early_stopping_patience"),
                     ("data", "max_length"), ("logging", "logging_steps"), ("logging", "save_steps"),
                     ("logging", "eval_steps"), ("logging", "save_total_limit")], "positive"),
    **dict.fromkeys([("training", "weight_decay"), ("training", "max_grad_norm"), ("training", "seed"),
                     ("logging", "eval_accuracy_samples")], "non-negative"),
    ("lora", "dropout"): "fraction",
    ("training", "max_steps"): "steps",
}
_RANGE_RULES = {
    "positive": (lambda v: v > 0, "must be positive"),
    "non-negative": (lambda v: v >= 0, "must be >= 0"),
    "fraction": (lambda v: 0 <= v < 1, "must be >= 0 and < 1"),
    "steps": (lambda v: v == -1 or v > 0, "must be -1 (train for num_train_epochs) or positive"),
}


def notice(message: str) -> None:
    print(f"ethsft: {message}", file=sys.stderr)


def _closest(key: str, options) -> str:
    match = difflib.get_close_matches(key, list(options), n=1, cutoff=0.0)
    return match[0] if match else ""


def _coerce(section: str, key: str, value: Any, annotation: Any, source: str) -> Any:
    """Check (and for CLI strings, parse) ``value`` against the field's type."""
    where = f"{source}: {section}.{key}"
    types = [t for t in (get_args(annotation) or (annotation,))]
    if value is None:
        if type(None) in types:
            return None
        raise ConfigError(f"{where} must not be empty")
    base_types = [get_origin(t) or t for t in types if t is not type(None)]
    if isinstance(value, str) and source.startswith("--set") and (
            str not in base_types or (list in base_types and value.lstrip().startswith("["))):
        try:  # a list key that also takes a string (target_modules: [..] or all-linear) reads [..] as a list
            value = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"{where}: cannot read {value!r} ({e.problem})") from None
    if bool in base_types:
        if isinstance(value, bool):
            return value
        if str not in base_types:
                raise ConfigError(f"{where} must be true or false, got {value!r}")
    if int in base_types and isinstance(value, int) and not isinstance(value, bool):
        return value
    if float in base_types and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value) if int not in base_types else value
    if isinstance(value, str) and (int in base_types or float in base_types):
        try:
            return float(value) if float in base_types else int(value)
        except ValueError:
            pass
    if list in base_types and isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    if str in base_types and isinstance(value, str):
        return value
    wanted = " or ".join(getattr(t, "__name__", str(t)) for t in base_types)
    raise ConfigError(f"{where} must be {wanted}, got {value!r}")


def _set(settings: Settings, section: str, key: str, value: Any, source: str) -> None:
    if section not in _SECTION_CLASSES:
        raise ConfigError(f"{source}: unknown section '{section}' (did you mean '{_closest(section, SECTIONS)}'?); "
                          f"sections are: {', '.join(SECTIONS)}")
    if (section, key) in LEGACY_KEYS:
        new_section, new_key, why = LEGACY_KEYS[(section, key)]
        notice(f"{source}: {section}.{key} is now {new_section}.{new_key} ({why}); using it as {new_section}.{new_key}")
        section, key = new_section, new_key
    cls = _SECTION_CLASSES[section]
    annotations = get_type_hints(cls)
    if key not in annotations:
        raise ConfigError(f"{source}: unknown key '{key}' in section '{section}' "
                          f"(did you mean '{_closest(key, annotations)}'?)")
    value = _coerce(section, key, value, annotations[key], source)
    rule = RANGES.get((section, key))
    if rule is not None and isinstance(value, (int, float)) and not isinstance(value, bool):
        ok, must = _RANGE_RULES[rule]
        if not ok(value):
            raise ConfigError(f"{source}: {section}.{key} {must}, got {value!r}")
    choices = VALID_CHOICES.get((section, key))
    if choices is not None and value not in choices:
        raise ConfigError(f"{source}: {section}.{key} must be one of "
                          f"{', '.join(sorted(str(c) for c in choices))}; got {value!r}")
    setattr(getattr(settings, section), key, value)


def apply_mapping(settings: Settings, data: dict, source: str) -> Settings:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of sections (model, lora, ...), got {type(data).__name__}")
    for section, values in data.items():
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError(f"{source}: section '{section}' must be a mapping of keys, got {values!r}")
        for key, value in values.items():
            _set(settings, section, key, value, source)
    return settings


def load_settings(config_path: str | Path | None = None, overrides: dict[str, Any] | None = None,
                  sets: list[str] | tuple[str, ...] = ()) -> Settings:
    """Defaults < YAML file < ``overrides`` ({"section.key": value}) < ``--set section.key=value`` strings."""
    settings = Settings()
    if config_path is not None:
        path = Path(config_path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as e:
            raise ConfigError(f"{path}: not valid YAML: {e}") from None
        apply_mapping(settings, data or {}, str(path))
    for dotted, value in (overrides or {}).items():
        section, _, key = dotted.partition(".")
        _set(settings, section, key, value, f"--{key.replace('_', '-')}")
    for item in sets:
        dotted, eq, value = item.partition("=")
        section, dot, key = dotted.strip().partition(".")
        if not eq or not dot:
            raise ConfigError(f"--set {item!r}: expected section.key=value, e.g. --set lora.r=32")
        _set(settings, section, key.strip(), value, f"--set {dotted.strip()}")
    validate(settings)
    return settings


def validate(s: Settings) -> None:
    """Cross-key rules that a single key's type cannot express."""
    if s.optimization.fp16 and s.optimization.bf16:
        raise ConfigError("optimization.fp16 and optimization.bf16 are both true; choose one")
    if s.lora.r <= 0:
        raise ConfigError(f"lora.r must be positive, got {s.lora.r}")
    if s.lora.top_layers is not None and s.lora.top_layers <= 0:
        raise ConfigError(f"lora.top_layers must be positive, got {s.lora.top_layers}")
    if s.lora.top_layers is not None and isinstance(s.lora.target_modules, str):
        raise ConfigError(f"lora.top_layers needs lora.target_modules as a list of module names, not "
                          f"{s.lora.target_modules!r} (peft cannot restrict a pattern to some layers); e.g. "
                          "[q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj]")
    if s.data.max_length <= 0:
        raise ConfigError(f"data.max_length must be positive, got {s.data.max_length}")
    if isinstance(s.optimization.use_liger_kernel, str) and s.optimization.use_liger_kernel != "auto":
        raise ConfigError(f"optimization.use_liger_kernel must be true, false or auto, got "
                          f"{s.optimization.use_liger_kernel!r}")
    if s.optimization.vram_budget_gib is not None and s.optimization.vram_budget_gib <= 0:
        raise ConfigError(f"optimization.vram_budget_gib must be positive, got {s.optimization.vram_budget_gib}")
    if s.optimization.cuda_graphs and not (s.optimization.fast_path and s.data.packing):
        raise ConfigError("optimization.cuda_graphs needs optimization.fast_path: true and data.packing: true (the "
                          "graphs replay packed rows of data.max_length tokens); set optimization.cuda_graphs: false")
    if s.training.hub_model_id is not None:
        from ethsft.training.hub_push import repo_id_problem

        problem = repo_id_problem(s.training.hub_model_id)
        if problem:
            raise ConfigError(f"training.hub_model_id: {problem}")
    if s.training.warmup_steps < 0:
        raise ConfigError(f"training.warmup_steps must be >= 0, got {s.training.warmup_steps}")
    if s.logging.metric_for_best_model.removeprefix("eval_").startswith("intent_") and s.logging.eval_accuracy_samples <= 0:
        raise ConfigError(f"logging.metric_for_best_model={s.logging.metric_for_best_model} is an intent metric: "
                          "set logging.eval_accuracy_samples > 0 so it is computed")
    if s.logging.load_best_model_at_end and s.logging.eval_strategy == "no":
        raise ConfigError("logging.load_best_model_at_end needs evaluation: set logging.eval_strategy to steps or epoch")
    if s.logging.load_best_model_at_end and s.logging.save_strategy not in (s.logging.eval_strategy, "best"):
        raise ConfigError(f"logging.load_best_model_at_end needs logging.save_strategy ({s.logging.save_strategy}) "
                          f"to match logging.eval_strategy ({s.logging.eval_strategy})")


def dump_yaml(settings: Settings) -> str:
    return yaml.safe_dump(settings.to_dict(), sort_keys=False)
