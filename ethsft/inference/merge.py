"""Merge a LoRA adapter into its base model and save a standalone model + tokenizer (what vLLM, TGI and
``AutoModelForCausalLM.from_pretrained`` serve).

The base is loaded un-quantized in the chosen dtype: merging into 4-bit weights would round the LoRA delta
into nf4 and lose it. The result is written to a temporary sibling folder and renamed into place, so a killed
merge never leaves a half-written model where a server would pick it up.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from ethsft.filenames import MERGE_FILE
from ethsft.inference.loading import ModelLoadError, adapter_base, check_adapter_fits, is_adapter_dir, training_settings

# what `ethsft push` may add to a merge output: the card (README.md when no one else wrote one), the loss plot
PUSH_FILES = ("ethsft_card.md", "loss_curves.png")

DTYPES = {"bfloat16": torch.bfloat16, "bf16": torch.bfloat16, "float16": torch.float16, "fp16": torch.float16,
          "float32": torch.float32, "fp32": torch.float32}


def merge_adapter(adapter_dir: str | Path, output_dir: str | Path, dtype: str = "bfloat16",
                  base_model: str | None = None, overwrite: bool = False) -> Path:
    """Merge ``adapter_dir`` into its base (or ``base_model``, which must be the same model) -> ``output_dir``."""
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from ethsft.config.schema import Settings
    from ethsft.inference.loading import load_tokenizer_for

    adapter_dir, output = Path(adapter_dir), Path(output_dir)
    if not is_adapter_dir(adapter_dir):
        raise ModelLoadError(f"{adapter_dir} is not an adapter dir (no adapter_config.json)")
    if dtype not in DTYPES:
        raise ModelLoadError(f"dtype must be one of {', '.join(DTYPES)}; got {dtype!r}")
    check_output(adapter_dir, output, overwrite)
    source = adapter_base(adapter_dir, base_model)
    settings = training_settings(adapter_dir) or Settings()
    base = AutoModelForCausalLM.from_pretrained(source, dtype=DTYPES[dtype], cache_dir=settings.model.cache_dir,
                                                trust_remote_code=settings.model.trust_remote_code, use_safetensors=True)
    check_adapter_fits(base, adapter_dir, source)
    merged = PeftModel.from_pretrained(base, str(adapter_dir)).merge_and_unload()
    merged.config.use_cache = True
    tokenizer = load_tokenizer_for(str(adapter_dir), source, settings)
    tokenizer.padding_side = "left"

    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.merging."))
    try:
        merged.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        files = sorted(p.name for p in tmp.iterdir()) + [MERGE_FILE]
        (tmp / MERGE_FILE).write_text(json.dumps(
            {"adapter": str(adapter_dir.resolve()), "base_model": source, "dtype": str(DTYPES[dtype]), "files": files},
            indent=2) + "\n", encoding="utf-8")
        umask = os.umask(0)
        os.umask(umask)
        tmp.chmod(0o777 & ~umask)  # mkdtemp made it private (drwx------); the model is an ordinary folder
        if output.exists():  # --overwrite: move the old one aside only once the new one is complete
            old = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.old."))
            os.replace(output, old / "model")
            os.replace(tmp, output)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, output)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return output


def check_output(adapter_dir: Path, output: Path, overwrite: bool) -> None:
    """``output`` may be new, or with --overwrite an earlier merge output holding only what merge and push wrote;
    never the adapter, a folder inside it, or one that holds it."""
    adapter, out = adapter_dir.resolve(), output.resolve()
    if out == adapter or out.is_relative_to(adapter):
        raise ModelLoadError(f"--output {output} is inside the adapter {adapter_dir}; choose a folder outside it")
    if adapter.is_relative_to(out):
        raise ModelLoadError(f"--output {output} holds the adapter {adapter_dir}; choose a folder outside it")
    if not output.exists():
        return
    if not overwrite:
        raise ModelLoadError(f"{output} already exists; pass --overwrite to replace it")
    try:
        owned = json.loads((output / MERGE_FILE).read_text(encoding="utf-8"))["files"]
    except (OSError, ValueError, KeyError, TypeError):
        raise ModelLoadError(f"--overwrite: {output} is not an `ethsft merge` output (no {MERGE_FILE} listing its "
                             "files), so it is kept; choose another --output") from None
    from ethsft.filenames import CARD_FILE
    from ethsft.model.hub import is_generated_card

    other = sorted(p.name for p in output.iterdir() if p.name not in (*owned, *PUSH_FILES)
                   and not (p.name == CARD_FILE and is_generated_card(p)))
    if other:
        raise ModelLoadError(f"--overwrite: {output} holds {', '.join(other)}, which `ethsft merge` did not write, so "
                             "it is kept; move it away or choose another --output")


def merge_for_generation(model, dtype: torch.dtype | None = None):
    """``model`` (a ``PeftModel``, possibly over a 4-bit base) as a plain model with every LoRA adapter folded into
    its base weights, for generation only: per token, one matmul per layer instead of the base's plus two LoRA
    ones, and no 4-bit dequantisation (on CPU, bitsandbytes dequantises every weight at every step).

    4-bit weights are dequantised once into ``dtype`` (default: the embedding's dtype, the precision the model
    computes in) and the adapter's delta added there, never rounded back into nf4. Changes ``model`` in place and
    returns the unwrapped model; a model without adapters or 4-bit layers comes back as it is."""
    from peft import PeftModel
    from peft.tuners.lora import LoraLayer
    from peft.utils.integrations import dequantize_module_weight

    inner = model.get_base_model() if isinstance(model, PeftModel) else model
    dtype = dtype or inner.get_input_embeddings().weight.dtype
    targets = []
    for name, module in inner.named_modules():
        if any(name.startswith(done + ".") for done, _ in targets[-1:]):
            continue  # inside a LoRA layer already taken: its base_layer goes with it
        if isinstance(module, LoraLayer) or type(module.weight if hasattr(module, "weight") else None).__name__ == "Params4bit":
            targets.append((name, module))
    for name, module in targets:
        base = module.get_base_layer() if isinstance(module, LoraLayer) else module
        weight = dequantize_module_weight(base).to(dtype)
        if isinstance(module, LoraLayer):
            for adapter in module.active_adapters:
                if adapter in module.lora_A:
                    weight = weight + module.get_delta_weight(adapter).to(dtype)
        plain = torch.nn.Linear(weight.shape[1], weight.shape[0], bias=base.bias is not None, device=weight.device,
                                dtype=dtype)
        with torch.no_grad():
            plain.weight.copy_(weight)
            if base.bias is not None:
                plain.bias.copy_(base.bias.to(dtype))
        parent, _, child = name.rpartition(".")
        setattr(inner.get_submodule(parent) if parent else inner, child, plain)
    quantizer = getattr(inner, "hf_quantizer", None)
    if quantizer is not None and not any(type(p).__name__ == "Params4bit" for p in inner.parameters()):
        quantizer.remove_quantization_config(inner)  # what transformers' own dequantize() ends with
    return inner
