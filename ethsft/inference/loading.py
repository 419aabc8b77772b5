"""Using a trained model: load an adapter dir (base + LoRA) or a merged/plain model dir, and read transactions
into records as training read them; ``ethsft.evaluation.predict`` generates their intents.

    loaded = load_for_inference("runs/tiny")                # adapter dir: base from adapter_config.json
    loaded = load_for_inference("models/merged", load_in_4bit=True)
    predict(loaded, [as_record('{"from":"0x..","to":"0x..","function":"transfer",...}')])
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, NamedTuple

import torch

from ethsft.model import embedded
from ethsft.config.schema import ConfigError, Settings, apply_mapping, notice
from ethsft.data.records import INSTRUCTION, DataError
from ethsft.filenames import SUMMARY_FILE  # written by `ethsft train`: the settings the adapter had

from peft.utils import CONFIG_NAME as ADAPTER_CONFIG, SAFETENSORS_WEIGHTS_NAME as ADAPTER_WEIGHTS  # noqa: E402
DECODED_COLUMNS = ("hash", "from_address", "to_address", "input")  # a decoded.csv row, not a prepared input


class ModelLoadError(ValueError):
    """The model or adapter cannot be loaded as asked (missing, or adapter and base do not fit)."""


class LoadedModel(NamedTuple):
    model: Any
    tokenizer: Any
    base_model: str  # what the weights came from (the base for an adapter, else the model dir itself)
    adapter: str | None
    system_prompt: str | None  # the training run's data.system_prompt, when the run summary says
    limit: tuple[int, str] = (2048, "truncate")  # the run's (data.max_length, data.overlong): the longest prompt


def is_adapter_dir(path: str | Path) -> bool:
    return (Path(path) / ADAPTER_CONFIG).is_file()


def training_settings(path: str | Path) -> Settings | None:
    """The settings a training run wrote beside its adapter (run_summary.json), or None."""
    summary = Path(path) / SUMMARY_FILE
    if not summary.is_file():
        return None
    try:
        data = json.loads(summary.read_text(encoding="utf-8")).get("settings") or {}
        return apply_mapping(Settings(), data, str(summary))
    except (ValueError, ConfigError, AttributeError):
        return None


def _canonical(name: str) -> str:
    name = embedded.resolve(name) if embedded.is_embedded(name) else name
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def _locate(name: str, what: str) -> str:
    """A loadable path or hub id for ``name``; an embedded model's cache path from another cache is rebuilt here."""
    if embedded.is_embedded(name):
        return embedded.resolve(name)
    path = Path(name).expanduser()
    if path.exists():
        return str(path)
    if path.parent.name == "models" and path.name in embedded.SHAPES:
        # adapters record the resolved cache path of an embedded base; the build is deterministic, so a
        # different ETHSFT_CACHE (another machine, a test's tmp dir) rebuilds the same weights
        notice(f"{what} {name} does not exist: using embedded:{path.name} from this machine's cache")
        return embedded.resolve(f"{embedded.EMBEDDED_PREFIX}{path.name}")
    if name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise ModelLoadError(f"{what} not found: {name}")
    if path.parent != Path(".") and path.parent.is_dir():  # runs/nope with runs/ here: a folder, not a Hub id
        raise ModelLoadError(f"{what} folder not found: {name} ({path.parent}/ has no {path.name})")
    return name  # a hub id


def adapter_base(adapter_dir: str | Path, base_model: str | None = None) -> str:
    """The base model for ``adapter_dir``: its adapter_config.json's, or ``base_model`` when it names the same one."""
    config = json.loads((Path(adapter_dir) / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    recorded = config.get("base_model_name_or_path")
    if base_model is None:
        if not recorded:
            raise ModelLoadError(f"{adapter_dir}/{ADAPTER_CONFIG} names no base_model_name_or_path; pass --base-model")
        return _locate(recorded, f"the adapter's base model (from {adapter_dir}/{ADAPTER_CONFIG})")
    if recorded and _canonical(recorded) != _canonical(base_model):
        raise ModelLoadError(f"adapter {adapter_dir} was trained on base model {recorded}, but --base-model is "
                             f"{base_model}; leave --base-model out to use the adapter's own base, or pass the "
                             "same model")
    return _locate(base_model, "--base-model")


def check_adapter_fits(model, adapter_dir: str | Path, base_name: str) -> None:
    """Compare every LoRA tensor's shape with the base module it attaches to, before PEFT loads it.

    PEFT's own failure is a long state-dict dump; this names the adapter, the base, and the first misfit.
    """
    weights = Path(adapter_dir) / ADAPTER_WEIGHTS
    if not weights.is_file():
        raise ModelLoadError(f"{adapter_dir}: no {ADAPTER_WEIGHTS} (is the adapter saved completely?)")
    from safetensors import safe_open

    config = json.loads((Path(adapter_dir) / ADAPTER_CONFIG).read_text(encoding="utf-8"))
    trained_on = config.get("base_model_name_or_path") or "an unrecorded base"
    with safe_open(str(weights), framework="pt") as fh:
        for key in fh.keys():
            parts = key.split(".")
            if len(parts) < 3 or parts[-2] not in ("lora_A", "lora_B") or parts[-1] != "weight":
                continue
            module_path = ".".join(parts[:-2]).removeprefix("base_model.model.")
            shape = tuple(fh.get_slice(key).get_shape())
            try:
                module = model.get_submodule(module_path)
            except AttributeError:
                raise ModelLoadError(f"adapter {adapter_dir} (trained on {trained_on}) does not fit base model "
                                     f"{base_name}: the base has no module {module_path}") from None
            module = getattr(module, "base_layer", module)
            in_f, out_f = getattr(module, "in_features", None), getattr(module, "out_features", None)
            expected = shape[1] if parts[-2] == "lora_A" else shape[0]
            actual = in_f if parts[-2] == "lora_A" else out_f
            if actual is not None and actual != expected:
                side = "input" if parts[-2] == "lora_A" else "output"
                raise ModelLoadError(f"adapter {adapter_dir} (trained on {trained_on}) does not fit base model "
                                     f"{base_name}: {module_path} has {side} size {actual} in the base, {expected} "
                                     f"in the adapter ({key} {list(shape)})")


def _no_model_message(folder: Path) -> str:
    """What a folder with neither an adapter nor a model is, and the checkpoint to use when it is a run's output."""
    text = (f"{folder}: no adapter here (no {ADAPTER_CONFIG}) and no model either (no config.json); pass a training "
            "run's output folder, a merged model folder, a hub id or embedded:tiny-mistral")
    steps = [(int(c.name.rsplit("-", 1)[1]), c) for c in folder.glob("checkpoint-*")
             if c.name.rsplit("-", 1)[1].isdigit() and is_adapter_dir(c)]
    if steps:
        text += f"; the run's newest checkpoint holds one: --model {max(steps)[1]}"
    return text


def default_dtype() -> torch.dtype:
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32  # CPU matmuls in bf16 are slow and less exact


def load_tokenizer_for(path: str, fallback: str, settings: Settings):
    """The tokenizer saved beside the model/adapter (it carries the training chat template), else the base's."""
    from ethsft.model.loading import load_tokenizer

    has_own = (Path(path) / "tokenizer_config.json").is_file() or (Path(path) / "tokenizer.json").is_file()
    tok = load_tokenizer(settings, path if has_own else fallback)
    tok.padding_side = "left"  # generation appends on the right, so padding goes left
    return tok


def load_for_inference(path: str | Path, load_in_4bit: bool = False, base_model: str | None = None,
                       dtype: torch.dtype | str | None = None, merge: bool = False) -> LoadedModel:
    """A model ready for ``generate``: an adapter dir (adapter_config.json -> base + LoRA), a merged or plain
    model dir, a hub id, or ``embedded:<shape>`` (the untrained baseline). ``load_in_4bit`` quantizes the
    base (nf4, double quant) as in training; ``dtype`` defaults to bf16/fp16 on GPU, fp32 on CPU.

    ``merge`` (what scoring uses): the adapter is folded into the base weights and the model generates in ``dtype``
    on CPU too (``merge.merge_for_generation``; a 4-bit base is dequantised once, not at every step). Without it,
    the base and adapter stay apart (as peft trains them) and a CPU model computes in fp32."""
    from ethsft.fastpath.runtime import configure_runtime
    from ethsft.config.hf import Precision
    from ethsft.model.loading import load_model

    configure_runtime()  # as training does: cuDNN SDPA off, on CPU freed memory kept in the heap
    path = str(path)
    adapter = path if Path(path).is_dir() and is_adapter_dir(path) else None
    settings = (training_settings(path) if adapter else None) or Settings()
    if adapter:
        source = adapter_base(adapter, base_model)
    else:
        if base_model is not None:
            raise ModelLoadError(f"--base-model applies to adapter dirs only; {path} has no {ADAPTER_CONFIG}")
        if Path(path).is_dir() and not (Path(path) / "config.json").is_file():
            raise ModelLoadError(_no_model_message(Path(path)))
        source = _locate(path, "model")
    settings.model.base_model = source
    settings.quantization.load_in_4bit = load_in_4bit
    dtype = getattr(torch, dtype) if isinstance(dtype, str) else (dtype or default_dtype())
    precision = Precision(bf16=dtype == torch.bfloat16, fp16=dtype == torch.float16, compute_dtype=dtype)
    try:
        model = load_model(settings, precision, source)  # the training loader: same quantization and attention
    except OSError as e:
        raise ModelLoadError(f"cannot load model {source}: {e}") from None
    tokenizer = load_tokenizer_for(adapter or source, source, settings)
    if adapter:
        from peft import PeftModel

        check_adapter_fits(model, adapter, source)
        try:
            model = PeftModel.from_pretrained(model, adapter, is_trainable=False)
        except (RuntimeError, ValueError) as e:
            raise ModelLoadError(f"adapter {adapter} does not fit base model {source}: {str(e)[:500]}") from None
    if merge:
        from ethsft.inference.merge import merge_for_generation

        model = merge_for_generation(model, dtype).to(dtype)
    model.eval()
    model.config.use_cache = True  # training turned it off; generation needs the KV cache
    return LoadedModel(model, tokenizer, source, adapter, settings.data.system_prompt,
                       (settings.data.max_length, settings.data.overlong))


# --- inputs -------------------------------------------------------------------------------------------------

def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def prepare_row(row: dict) -> str:
    """A decoded.csv / ethereum-etl row -> the compact input JSON the model was trained on (ethsft.eth)."""
    try:
        from ethsft.eth.tx import model_input, normalize
    except ImportError as e:
        raise ModelLoadError(f"raw transaction rows need the ethsft.eth package ({e}); pass a prepared input "
                             "(JSONL records with instruction/input) instead") from None
    return _compact(model_input(normalize(row)))


_JSON_KIND = {list: "a JSON array", str: "a JSON string", int: "a number", float: "a number", bool: "true/false",
              type(None): "null"}
_EXPECTED = "expected a JSON object (a transaction, its model input, a prepared record or a decoded.csv row)"


def _shown(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[: limit - 3] + "...")


def as_record(tx: str | dict, where: str = "transaction") -> dict:
    """One transaction, in any accepted form, -> an ``{instruction, input}`` record.

    Accepted: a prepared record (``instruction``/``input`` keys), a decoded.csv row (``hash``, ``from_address``,
    ...), the model-input JSON object itself, or a JSON string of any of these. A string that is not JSON at all
    is taken as the input text verbatim (free text); one that starts like JSON (``{`` or ``[``) but does not
    parse, or JSON that is not an object, raises DataError naming ``where`` (e.g. ``argument 2``, ``file:3``).
    """
    if isinstance(tx, str):
        text = tx.strip()
        try:
            tx = json.loads(text)
        except json.JSONDecodeError as e:
            if not text.startswith(("{", "[")):
                return {"instruction": INSTRUCTION, "input": text}
            at = f"line {e.lineno} column {e.colno}" if e.lineno > 1 else f"column {e.colno}"
            raise DataError(f"{where}: malformed JSON ({e.msg} at {at}) in {_shown(text)}; {_EXPECTED}") from None
        if not isinstance(tx, dict):
            raise DataError(f"{where}: {_EXPECTED}, got {_JSON_KIND.get(type(tx), type(tx).__name__)}: "
                            f"{_shown(text)}")
    if not isinstance(tx, dict):
        raise DataError(f"{where}: {_EXPECTED}, got {_JSON_KIND.get(type(tx), type(tx).__name__)}: "
                        f"{_shown(_compact(tx))}")
    if "input" in tx and ("instruction" in tx or "output" in tx):
        inp = tx["input"]
        return {**tx, "instruction": tx.get("instruction") or INSTRUCTION,
                "input": inp if isinstance(inp, str) else _compact(inp)}
    if all(c in tx for c in DECODED_COLUMNS):
        try:
            return {"instruction": INSTRUCTION, "input": prepare_row(tx)}
        except ModelLoadError:
            raise
        except ValueError as e:  # ethsft.eth's RowError: "column: what is wrong"
            raise DataError(f"{where}: {e}") from None
    return {"instruction": INSTRUCTION, "input": _compact(tx)}


def read_inputs(path: str | Path) -> list[dict]:
    """Every transaction in a .jsonl (one per line), .json (object or list) or .csv (decoded rows) file."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"input file not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        import csv

        csv.field_size_limit(2**31 - 1)  # calldata can be long
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            return [as_record(row, f"{path}: row {reader.line_num}") for row in reader]
    text = path.read_text(encoding="utf-8-sig")
    if suffix == ".json":
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: malformed JSON ({e.msg} at line {e.lineno} column {e.colno}); expected a "
                            "JSON object or a list of them") from None
        items = data if isinstance(data, list) else [data]
        return [as_record(d, f"{path}: item {i}" if isinstance(data, list) else str(path))
                for i, d in enumerate(items, start=1)]
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            try:
                parsed = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{lineno}: malformed JSON ({e.msg} at column {e.colno}); {_EXPECTED}") from None
            records.append(as_record(parsed, f"{path}:{lineno}"))
    return records
