"""The model card (README.md) pushed with an adapter or a merged model: the base model, the data
(``prepare_summary.json`` from ``ethsft prepare``, else the split sizes the run counted), the hyperparameters
(the resolved config, secrets redacted), the results (``ethsft evaluate``'s metrics.json when there is one, the
final losses from run_summary.json), the loss plot, and how to load it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from ethsft.data.records import INSTRUCTION
from ethsft.filenames import CARD_FILE, MERGE_FILE, METRICS_FILE, PLOT_FILE, PREPARE_SUMMARY_FILE, SUMMARY_FILE
from ethsft.training.reporting import redact, redact_text

HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
EXAMPLE_TX = '{"from":"0x..","to":"0x..","value":"0","input":"0xa9059cbb..."}'


@dataclass
class CardFacts:
    kind: str  # "adapter" | "merged"
    repo_id: str
    base_model: str
    run: dict  # run_summary.json ({} when absent)
    settings: dict  # the resolved config ({} when absent)
    data: dict | None  # prepare_summary.json
    metrics: dict | None  # an evaluation's metrics.json
    metrics_from: str | None  # its folder's name, e.g. eval-test
    metrics_of_adapter: bool  # a merged model's card showing the evaluation of the adapter it came from
    plot: bool
    merge: dict | None  # ethsft_merge.json


def _read_json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_hub_id(name: str | None) -> bool:
    return bool(name) and bool(HUB_ID.match(name)) and not Path(name).expanduser().exists()


def run_dir_of(folder: Path, kind: str) -> Path | None:
    """The training run's folder: the adapter folder itself, or the adapter a merged model came from."""
    if kind == "adapter":
        return folder
    merge = _read_json(folder / MERGE_FILE) or {}
    adapter = merge.get("adapter")
    return Path(adapter) if adapter and Path(adapter).is_dir() else None


def find_metrics(*folders: Path | None) -> tuple[dict | None, str | None, int | None]:
    """The newest ``eval-*/metrics.json`` under the first folder that has one (eval-test preferred): (metrics,
    its folder's name, the index of the folder in ``folders``)."""
    for i, folder in enumerate(folders):
        if folder is None or not folder.is_dir():
            continue
        found = sorted(folder.glob(f"eval-*/{METRICS_FILE}"), key=lambda p: (p.parent.name == "eval-test",
                                                                            p.stat().st_mtime), reverse=True)
        for path in found:
            metrics = _read_json(path)
            if metrics and "samples" in metrics:
                return metrics, path.parent.name, i
    return None, None, None


def gather(folder: str | Path, kind: str, repo_id: str) -> CardFacts:
    folder = Path(folder)
    run_dir = run_dir_of(folder, kind)
    run = (_read_json(run_dir / SUMMARY_FILE) if run_dir else None) or {}
    settings = run.get("settings") or {}
    merge = _read_json(folder / MERGE_FILE) if kind == "merged" else None
    base = (settings.get("model") or {}).get("base_model") or run.get("base_model")
    if not base:
        config = _read_json(folder / "adapter_config.json") or {}
        base = config.get("base_model_name_or_path") or (merge or {}).get("base_model") or "unknown"
    dataset_dir = (settings.get("data") or {}).get("dataset_dir")
    data = _read_json(Path(dataset_dir) / PREPARE_SUMMARY_FILE) if dataset_dir else None
    metrics, metrics_from, where = find_metrics(folder, run_dir if run_dir != folder else None)
    return CardFacts(kind, repo_id, str(base), run, settings, data, metrics, metrics_from, where == 1,
                     (folder / PLOT_FILE).is_file(), merge)


# --- rendering ---------------------------------------------------------------------------------------------------

def _front_matter(f: CardFacts) -> str:
    from huggingface_hub import ModelCardData

    hub_base = is_hub_id(f.base_model)
    meta = ModelCardData(library_name="peft" if f.kind == "adapter" else "transformers",
                         base_model=f.base_model if hub_base else None,
                         base_model_relation="finetune" if hub_base and f.kind == "merged" else None,
                         pipeline_tag="text-generation",
                         tags=["ethsft", "lora", "qlora", "sft", "trl", "ethereum"] + (["merged"] if f.kind == "merged"
                                                                                         else []))
    return f"---\n{meta.to_yaml()}\n---\n"


def _base_link(f: CardFacts) -> str:
    return (f"[{f.base_model}](https://huggingface.co/{f.base_model})" if is_hub_id(f.base_model)
            else f"`{f.base_model}`")


def _pct(x) -> str:
    return f"{100 * x:.1f}%" if isinstance(x, (int, float)) else "n/a"


def _num(x, fmt: str = ".4f") -> str:
    return format(x, fmt) if isinstance(x, (int, float)) and not isinstance(x, bool) else "n/a"


def _data_section(f: CardFacts) -> list[str]:
    lines = ["## Data", ""]
    d = f.data
    if d:
        source = Path(str(d.get("input", ""))).name or "a decoded transactions file"
        lines.append(f"Instruction records built by `ethsft prepare` from `{source}`"
                     + (f" ({d['format']})" if d.get("format") else "") + ": "
                     f"{d.get('rows_read', 'n/a')} rows read, {d.get('kept', 'n/a')} kept, "
                     f"{d.get('duplicates', 'n/a')} duplicates dropped, {d.get('rejected', 'n/a')} rejected.")
        lines.append("")
        splits = d.get("splits") or {}
        if splits:
            lines += ["| split | records |", "|---|---:|"] + [f"| {k} | {v} |" for k, v in splits.items()] + [""]
        actions = {k: v for k, v in (d.get("actions") or {}).items() if v}
        if actions:
            lines += ["Actions: " + ", ".join(f"{k} {v}" for k, v in actions.items()) + ".", ""]
        t = d.get("tokens") or {}
        if isinstance(t.get("prompt"), dict) and isinstance(t.get("completion"), dict):
            lines += [f"Tokens ({t.get('tokenizer', 'tokenizer')}, a sample of {t.get('sample', 'n/a')} records): "
                      f"prompt mean {t['prompt'].get('mean')} / p95 {t['prompt'].get('p95')}, completion mean "
                      f"{t['completion'].get('mean')} / p95 {t['completion'].get('p95')}.", ""]
    samples = f.run.get("samples") or {}
    if samples:
        lines.append("Records the run trained and validated on: "
                     + ", ".join(f"{k} {v}" for k, v in samples.items()) + ".")
        overlong = {k: v for k, v in (f.run.get("overlong_samples") or {}).items() if v}
        if overlong:
            mode = (f.settings.get("data") or {}).get("overlong", "truncate")
            lines.append(f"Longer than data.max_length ({mode}): " + ", ".join(f"{k} {v}" for k, v in overlong.items())
                         + ".")
        lines.append("")
    if not d and not samples:
        lines += ["No data summary was found beside this model.", ""]
    return lines


def _hyperparameters(f: CardFacts) -> list[str]:
    s = f.settings
    if not s:
        return ["## Training hyperparameters", "", f"The training run's settings ({SUMMARY_FILE}) were not found.", ""]
    m, lo, q, t, d, o = (s.get(k) or {} for k in ("model", "lora", "quantization", "training", "data", "optimization"))
    procs = f.run.get("num_processes") or 1
    micro, accum = t.get("per_device_train_batch_size"), t.get("gradient_accumulation_steps")
    method = (f"QLoRA: {q.get('bnb_4bit_quant_type', 'nf4')} 4-bit base (double quantization "
              f"{'on' if q.get('bnb_4bit_use_double_quant') else 'off'}, compute {q.get('bnb_4bit_compute_dtype')}) "
              "+ LoRA") if q.get("load_in_4bit") else "LoRA on the un-quantized base"
    target = lo.get("target_modules")
    rows = [
        ("base model", f"`{m.get('base_model', f.base_model)}`"),
        ("method", method),
        ("LoRA r / alpha / dropout", f"{lo.get('r')} / {lo.get('alpha')} / {lo.get('dropout')}"),
        ("target modules", ", ".join(target) if isinstance(target, list) else str(target)),
    ]
    if lo.get("modules_to_save"):
        rows.append(("modules trained whole", ", ".join(lo["modules_to_save"])))
    if lo.get("top_layers"):
        rows.append(("adapters on the last N layers", str(lo["top_layers"])))
    steps = f.run.get("global_step")
    rows += [
        ("epochs", f"{t.get('num_train_epochs')}" + (f" ({steps} optimizer steps)" if steps is not None else "")),
        ("learning rate", f"{t.get('learning_rate')} ({t.get('lr_scheduler_type')}, warmup {t.get('warmup_steps')})"),
        ("batch", f"{micro} per device x {accum} accumulation x {procs} process{'es' if procs != 1 else ''} = "
                  f"{f.run.get('effective_batch') or (micro or 0) * (accum or 0) * procs} per step"),
        ("max length", f"{d.get('max_length')} tokens, packing {'on' if d.get('packing') else 'off'}"),
        ("optimizer", f"{o.get('optim')}, weight decay {t.get('weight_decay')}, max grad norm {t.get('max_grad_norm')}"),
        ("seed", str(t.get("seed"))),
    ]
    if f.run.get("train_tokens"):
        rows.append(("tokens trained on", f"{f.run['train_tokens']:,}"))
    config = yaml.safe_dump(redact(s), sort_keys=False).rstrip()
    return (["## Training hyperparameters", "", "| | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
            + ["", "<details><summary>The resolved config (<code>ethsft train --config</code> accepts it)</summary>",
               "", "```yaml", config, "```", "", "</details>", ""])


def _results(f: CardFacts) -> list[str]:
    lines = ["## Results", ""]
    mt = f.metrics
    if mt:
        whose = " (of the adapter this model was merged from)" if f.metrics_of_adapter else ""
        lines += [f"`ethsft evaluate` on {mt.get('samples')} held-out records ({f.metrics_from}){whose}, greedy "
                  "decoding:", "",
                  "| metric | value |", "|---|---:|",
                  f"| valid JSON | {_pct(mt.get('valid_json_rate'))} |",
                  f"| exact match | {_pct(mt.get('exact_match'))} |",
                  f"| field accuracy | {_pct(mt.get('field_accuracy'))} |", ""]
        fields = mt.get("fields") or {}
        if fields:
            lines += ["| field | accuracy | correct | total |", "|---|---:|---:|---:|"]
            lines += [f"| {k} | {_pct(v.get('accuracy'))} | {v.get('correct')} | {v.get('total')} |"
                      for k, v in fields.items()] + [""]
    run = f.run
    if run:
        losses = []
        if run.get("final_eval_loss") is not None:
            losses.append(f"final validation loss {_num(run['final_eval_loss'])}")
        if run.get("train_loss") is not None:
            losses.append(f"mean training loss {_num(run['train_loss'])}")
        if losses:
            lines += [("Training: " + ", ".join(losses) + f" after {run.get('global_step')} steps").rstrip() + ".", ""]
        if not mt:
            lines += ["No `ethsft evaluate` results were pushed with this model (`ethsft evaluate --model <folder> "
                      "--dataset <dataset>` before `ethsft push` adds them).", ""]
    elif not mt:
        lines += ["No results were found beside this model.", ""]
    if f.plot:
        lines += [f"![Training and validation loss]({PLOT_FILE})", ""]
    return lines


def _usage(f: CardFacts) -> list[str]:
    repo = f.repo_id
    system = (f.settings.get("data") or {}).get("system_prompt")
    messages = (f'    {{"role": "system", "content": {json.dumps(system)}}},\n' if system else "") + \
        f'    {{"role": "user", "content": {json.dumps(INSTRUCTION)} + "\\n\\n" + tx}},\n'
    if f.kind == "adapter":
        load = (f"from peft import AutoPeftModelForCausalLM\nfrom transformers import AutoTokenizer\n\n"
                f'model = AutoPeftModelForCausalLM.from_pretrained("{repo}", dtype="auto", device_map="auto")\n'
                f'tokenizer = AutoTokenizer.from_pretrained("{repo}")\n')
    else:
        load = (f"from transformers import AutoModelForCausalLM, AutoTokenizer\n\n"
                f'model = AutoModelForCausalLM.from_pretrained("{repo}", dtype="auto", device_map="auto")\n'
                f'tokenizer = AutoTokenizer.from_pretrained("{repo}")\n')
    code = (load + f"\ntx = '{EXAMPLE_TX}'  # a transaction as JSON\nmessages = [\n{messages}]\n"
            "inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_dict=True,\n"
            '                                       return_tensors="pt").to(model.device)\n'
            "out = model.generate(**inputs, max_new_tokens=384, do_sample=False)\n"
            'print(tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True))  '
            "# the intent as JSON\n")
    name = repo.split("/")[-1]
    if f.kind == "adapter":
        cli = (f"hf download {repo} --local-dir {name}\n"
               f"ethsft infer --model {name} '{EXAMPLE_TX}'\n"
               f"ethsft merge --adapter {name} --output {name}-merged   # a standalone model for vLLM / TGI\n")
    else:
        cli = f"ethsft infer --model {repo} '{EXAMPLE_TX}'\nvllm serve {repo}\n"
    lines = ["## How to use", "", "```python", code.rstrip(), "```", "", "With ethsft:",
             "", "```bash", cli.rstrip(), "```", ""]
    if f.kind == "adapter" and not is_hub_id(f.base_model):
        lines += [f"The base model `{f.base_model}` is not a Hugging Face Hub id: load the adapter onto it with "
                  f"`ethsft infer --base-model {f.base_model}` (or peft's `PeftModel.from_pretrained` on a local copy).",
                  ""]
    return lines


def render(f: CardFacts) -> str:
    name = f.repo_id.split("/")[-1]
    base = _base_link(f)
    if f.kind == "adapter":
        intro = (f"A LoRA adapter for {base}, fine-tuned with ethsft (TRL SFT, QLoRA) to extract "
                 "the structured intent of an Ethereum transaction as JSON. Load it on top of its base model (below).")
    else:
        dtype = (f.merge or {}).get("dtype", "").replace("torch.", "")
        intro = (f"A merged model: a LoRA adapter fine-tuned with ethsft (TRL SFT, "
                 f"QLoRA) merged into its base model {base}" + (f" ({dtype} weights)" if dtype else "") +
                 ", so it loads as a standalone model (transformers, vLLM, TGI) and extracts the structured intent "
                 "of an Ethereum transaction as JSON.")
    lines = [_front_matter(f), f"# {name}", "", intro, "", "## Base model", "",
             base + (" (the adapter is merged into it)" if f.kind == "merged" else ""), ""]
    lines += _data_section(f) + _hyperparameters(f) + _results(f) + _usage(f)
    lines += ["## Framework versions", ""] + [f"- {k} {v}" for k, v in _versions().items()] + [""]
    return redact_text("\n".join(lines).rstrip() + "\n")


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in ("ethsft", "peft", "trl", "transformers", "torch", "bitsandbytes"):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            pass
    return found


def write_card(folder: str | Path, repo_id: str, kind: str, path: Path | None = None) -> Path:
    """The card for ``folder`` (an adapter or a merged model), written to ``path`` (default: its README.md)."""
    path = path or Path(folder) / CARD_FILE
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(render(gather(folder, kind, repo_id)), encoding="utf-8")
    tmp.replace(path)
    return path
