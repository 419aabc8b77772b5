"""Settings -> the Hugging Face objects a run uses: BitsAndBytesConfig, LoraConfig, SFTConfig.

Kept free of model loading so ``--dry-run`` can print all three without touching a GPU.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

import torch

from ethsft.config.schema import ConfigError, Settings, notice
from ethsft.fastpath.switches import fast_path_on, fitted_checkpointing

TRACKERS = {"tensorboard": ("tensorboard", "ethsft[tensorboard]"), "wandb": ("wandb", "ethsft[wandb]"),
            "mlflow": ("mlflow", "ethsft[mlflow]")}


def usable_report_to(report_to) -> tuple[list[str], list[str]]:
    """``logging.report_to`` without the trackers that are not installed, and one notice per dropped one.

    A run never fails for a missing tracker: it trains without it and says how to install it."""
    wanted = report_to if isinstance(report_to, list) else [report_to]
    kept, notes = [], []
    for name in wanted:
        if name in (None, "none"):
            continue
        module, extra = TRACKERS.get(name, (name, None))
        if importlib.util.find_spec(module) is not None:
            kept.append(name)
        else:
            how = f"pip install '{extra}'" if extra else f"install {name}"
            notes.append(f"logging.report_to: {name} is not installed; training without it ({how} to track with it)")
    return kept, notes


@dataclass
class Precision:
    bf16: bool
    fp16: bool
    compute_dtype: torch.dtype
    note: str | None = None


def resolve_precision(s: Settings) -> Precision:
    """bf16 where the GPU supports it, else fp16 with a notice; fp32 training on CPU."""
    wanted = getattr(torch, s.quantization.bnb_4bit_compute_dtype)
    if not torch.cuda.is_available():
        # CPU: autocast is slower than fp32 for tiny matmuls, faster from ~100M parameters on CPUs with native bf16.
        if s.optimization.cpu_bf16 and cpu_has_bf16():
            return Precision(True, False, torch.bfloat16, "no CUDA GPU: training under bfloat16 autocast on CPU")
        note = "no CUDA GPU: training in float32 on CPU" if (s.optimization.bf16 or s.optimization.fp16) else None
        return Precision(False, False, wanted, note)
    if s.optimization.bf16 and not torch.cuda.is_bf16_supported():
        return Precision(False, True, torch.float16,
                         f"{torch.cuda.get_device_name(0)} has no bfloat16: using float16 (optimization.fp16)")
    if wanted == torch.bfloat16 and s.optimization.fp16:
        wanted = torch.float16
    return Precision(s.optimization.bf16, s.optimization.fp16, wanted)


def cpu_has_bf16() -> bool:
    """The CPU computes bfloat16 natively (oneDNN's check: AVX512-BF16 or AMX)."""
    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def bnb_config(s: Settings, precision: Precision | None = None):
    from transformers import BitsAndBytesConfig

    q = s.quantization
    if not (q.load_in_4bit or q.extra.get("load_in_8bit")):
        return None
    precision = precision or resolve_precision(s)
    storage = getattr(torch, q.bnb_4bit_quant_storage) if q.bnb_4bit_quant_storage else torch.uint8
    return BitsAndBytesConfig(**{
        "load_in_4bit": q.load_in_4bit,
        "bnb_4bit_compute_dtype": precision.compute_dtype,
        "bnb_4bit_quant_type": q.bnb_4bit_quant_type,
        "bnb_4bit_use_double_quant": q.bnb_4bit_use_double_quant,
        "bnb_4bit_quant_storage": storage,
        **q.extra,  # any other BitsAndBytesConfig argument, as given
    })


def lora_config(s: Settings, num_layers: int | None = None):
    """peft's LoraConfig; ``num_layers`` (the model's decoder layers) places ``lora.top_layers``."""
    from peft import LoraConfig

    lo = s.lora
    layers = None
    if lo.top_layers is not None and num_layers is not None:
        layers = list(range(max(0, num_layers - lo.top_layers), num_layers))
    return LoraConfig(**{
        "layers_to_transform": layers,
        "r": lo.r,
        "lora_alpha": lo.alpha,
        "lora_dropout": lo.dropout,
        "target_modules": lo.target_modules,
        "bias": lo.bias,
        "task_type": lo.task_type,
        "use_dora": lo.use_dora,
        "use_rslora": lo.use_rslora,
        "modules_to_save": lo.modules_to_save,
        **lo.extra,  # any other LoraConfig field, as given
    })


def checkpointing_args(on: bool) -> dict:
    """Activation checkpointing under the name this transformers takes: 5.2x renamed ``gradient_checkpointing``
    to ``activation_checkpointing`` and warns on the old name."""
    import dataclasses

    from transformers import TrainingArguments

    name = ("activation_checkpointing" if "activation_checkpointing" in
            {f.name for f in dataclasses.fields(TrainingArguments)} else "gradient_checkpointing")
    return {name: on, f"{name}_kwargs": {"use_reentrant": False} if on else None}


def sft_config(s: Settings, precision: Precision | None = None, *, quiet: bool = False, **extra):
    """The SFTConfig for ``s``: ethsft's keys, then every other SFTConfig field the config sets (``training.extra``),
    which win over what ethsft would choose; ``extra`` carries launcher-owned fields (``deepspeed``)."""
    from trl import SFTConfig

    precision = precision or resolve_precision(s)
    t, lg, o, d = s.training, s.logging, s.optimization, s.data

    report_to, tracker_notes = usable_report_to(lg.report_to)  # an uninstalled tracker is dropped, not fatal
    for note in [] if quiet else tracker_notes:
        notice(note)
    optim = o.optim
    if not torch.cuda.is_available() and optim.startswith("paged_"):
        # paged optimizers page optimizer state through CUDA unified memory; on CPU there is nothing to page.
        optim = optim.replace("paged_", "", 1).replace("adamw_32bit", "adamw_torch").replace("adamw_8bit", "adamw_torch")
    checkpointing = o.gradient_checkpointing and not fitted_checkpointing(s)  # fitted: ethsft picks the layers
    chosen = dict(
        output_dir=t.output_dir,
        num_train_epochs=t.num_train_epochs,
        max_steps=t.max_steps,
        per_device_train_batch_size=t.per_device_train_batch_size,
        per_device_eval_batch_size=t.per_device_eval_batch_size,
        gradient_accumulation_steps=t.gradient_accumulation_steps,
        learning_rate=t.learning_rate,
        weight_decay=t.weight_decay,
        max_grad_norm=t.max_grad_norm,
        warmup_steps=t.warmup_steps,
        lr_scheduler_type=t.lr_scheduler_type,
        seed=t.seed,
        data_seed=t.seed,
        max_length=d.max_length,
        dataset_text_field=d.dataset_text_field,
        packing=d.packing,
        **checkpointing_args(checkpointing),
        optim=optim,
        bf16=precision.bf16,
        fp16=precision.fp16,
        use_liger_kernel=liger_on(s),
        # compiled layers fuse RMSNorm, RoPE and SwiGLU themselves: Liger keeps only its fused linear cross-entropy
        liger_kernel_config={"rope": False, "rms_norm": False, "swiglu": False}
        if fast_path_on(s) and o.compile and liger_on(s) else None,
        logging_steps=lg.logging_steps,
        save_strategy=lg.save_strategy,
        save_steps=lg.save_steps,
        eval_strategy=lg.eval_strategy,
        eval_steps=lg.eval_steps,
        save_total_limit=lg.save_total_limit,
        load_best_model_at_end=lg.load_best_model_at_end,
        metric_for_best_model=lg.metric_for_best_model,
        greater_is_better=not lg.metric_for_best_model.endswith("loss"),
        report_to=report_to or "none",
        run_name=_run_name(t.output_dir),
        include_num_input_tokens_seen="non_padding",
        dataloader_pin_memory=torch.cuda.is_available(),
        use_cpu=not torch.cuda.is_available(),
        ddp_find_unused_parameters=False,  # every LoRA weight gets a gradient each step
    )
    return SFTConfig(**{**chosen, **t.extra, **extra})


def check(s: Settings) -> None:
    """Build the SFTConfig, LoraConfig and BitsAndBytesConfig ``s`` gives, before any model loads: what TRL, peft
    and transformers refuse becomes one ConfigError naming the key (enums such as lr_scheduler_type and optim are
    checked here, with their choices)."""
    from peft import TaskType
    from transformers.trainer_utils import SchedulerType
    from transformers.training_args import OptimizerNames

    enums = {("training", "lr_scheduler_type", s.training.lr_scheduler_type): [e.value for e in SchedulerType],
             ("optimization", "optim", s.optimization.optim): [e.value for e in OptimizerNames],
             ("lora", "task_type", s.lora.task_type): [e.value for e in TaskType]}
    for (section, key, value), choices in enums.items():
        if value not in choices:
            raise ConfigError(f"{section}.{key}: {value!r} is not one of {', '.join(choices)}")
    builds = (("BitsAndBytesConfig", bnb_config, "quantization"), ("LoraConfig", lora_config, "lora"),
              ("SFTConfig", lambda s: sft_config(s, quiet=True), "training"))
    for what, build, where in builds:
        try:
            build(s)
        except (ValueError, TypeError) as e:
            passed = getattr(s, where).extra
            keys = f" (set: {', '.join(f'{where}.{k}' for k in passed)})" if passed else ""
            raise ConfigError(f"{what} refused the settings{keys}: {' '.join(str(e).split())}") from None


def _run_name(output_dir: str) -> str:
    from pathlib import Path

    return Path(output_dir).resolve().name


def describe(s: Settings) -> str:
    """The fully resolved settings, as ``--dry-run`` prints them."""
    from ethsft.config.schema import dump_yaml

    precision = resolve_precision(s)
    if precision.note:
        notice(precision.note)
    parts = ["# ethsft settings (defaults < YAML < command line)", dump_yaml(s).rstrip(), "",
             "# BitsAndBytesConfig", repr(bnb_config(s, precision)), "",
             "# LoraConfig", repr(lora_config(s)), "",
             "# SFTConfig", _sft_summary(sft_config(s, precision))]
    return "\n".join(parts)


def _sft_summary(cfg) -> str:
    from dataclasses import fields

    from transformers import TrainingArguments

    defaults = TrainingArguments(output_dir=cfg.output_dir)
    lines = []
    for f in fields(cfg):
        if f.name.startswith("_"):
            continue
        value = getattr(cfg, f.name)
        if not hasattr(defaults, f.name) or value != getattr(defaults, f.name) or f.name in ("output_dir", "max_length"):
            lines.append(f"{f.name}: {value!r}")
    return "SFTConfig(non-default fields)\n  " + "\n  ".join(lines)


def liger_on(s: Settings) -> bool:
    """``optimization.use_liger_kernel`` resolved: ``auto`` is on where liger-kernel is installed and a GPU is."""
    value = s.optimization.use_liger_kernel
    if value != "auto":
        return bool(value)
    from ethsft.fastpath.runtime import liger_available

    return liger_available() and torch.cuda.is_available()
