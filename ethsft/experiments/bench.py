"""`ethsft bench`: the guide's settings vs TRL's best built-in setup vs ethsft's fast path, one GPU, one run.

Every mode trains ``warmup + steps`` optimizer steps (one micro-batch a step unless the mode accumulates) of the same
QLoRA job (embedded random-weight model of ``--model-shape`` in 4-bit, r=16 on q/v, paged AdamW 32-bit) on the
same prepared synth dataset (real transaction lengths, the Mistral tokenizer), through ethsft's own
``build_trainer``. Modes (``--modes``, comma separated; ``name:key=value;key=value`` overrides a mode's knobs):

  a      the guide's settings: batch 1, no packing, sdpa, every layer checkpointed
  a'     TRL's best built-in setup at the same budget: packing (bfd) + flex_attention + Liger (when installed),
         every layer checkpointed
  b      ethsft's fast path as the 12GB preset runs it: 2048-token packed rows x 4 a step, varlen attention
         (cuDNN SDPA off), Liger, decoder layers compiled, each row replayed as CUDA graphs, checkpointing
         fitted to --vram
  b80    b with an 80 GiB budget and 16k-token rows (the 80GB preset)
  NAME.yaml  a shipped preset (ethsft.planning.hardware.PRESET_CARDS: 8gb.yaml, training_config.yaml, ...) as it trains:
         its batch, rows, checkpointing and fast path; only the model shape, data and step count are the bench's
         (``NAME.yaml:rows=3072;accum=3`` tries a variant: rows, batch, accum, vram, compile, graphs, card)

Memory cap (``--cap``): each mode runs under ``torch.cuda.set_per_process_memory_fraction`` at its card's memory
minus the CUDA context (ethsft.planning.hardware.card_cap_gib: 11.5 GiB for a 12 GB card, 79.5 for 80 GB), so a
"fits" on a bigger GPU means what it would on that card: a mode that needs more fails with OutOfMemoryError and the
table says so. The card is the knob ``card`` (GB): 12 for a, a', b; 80 for b80; a preset's from its name.

Knobs: attn (sdpa|eager|flex_attention|varlen), liger (0|1|auto), ckpt (all|none|fit|<layers>), rows
(tokens per packed row / max_length), batch, accum (micro-batches per optimizer step), vram (GiB), packing (0|1),
path (ethsft|trl), offload (0|1), compile (0|1: torch.compile each decoder layer), graphs (0|1: CUDA-graphed
micro-batches), optim (default: the preset's), card (GB: the card whose cap the mode runs under), bits (4|16: the
base weights in 4-bit NF4, the default, or left in bf16: a ceiling with no dequantisation, for measuring only).

Throughput counts real (non-padding) tokens over the measured steps (after warm-up; CUDA synchronised at each
step end). FLOPs utilisation (MFU) = tokens/s x F / peak, F = 4 P + 12 L h c: forward (2 P) and the input-gradient
backward (2 P) of the P matmul weights a token passes (every decoder linear + lm_head; frozen 4-bit weights need no
weight gradient, LoRA's own FLOPs are < 0.5% and left out), attention 4 L h c forward + 8 L h c backward with c the
mean attended context per token. HFU adds what checkpointing recomputes (2 P + 4 L h c per checkpointed fraction, P
here the decoder's linears only: the LM head is not recomputed). The count is ethsft.planning.speed.flops_per_token,
the one the estimate uses; the peak comes from ethsft.planning.hardware's GPU table (or ``--peak-tflops``).
"""

from __future__ import annotations

import json
import os
import subprocess
import statistics
import sys
import tempfile
import time
from pathlib import Path

from ethsft.config import presets
from ethsft.planning.hardware import PRESET_CARDS
from ethsft.units import GiB

MODES = {
    "a": dict(path="trl", packing=0, attn="sdpa", liger="0", ckpt="all", rows=2048, batch=1, card=12,
              label="guide: batch 1, no packing, sdpa, full ckpt"),
    "a'": dict(path="trl", packing=1, attn="flex_attention", liger="auto", ckpt="all", rows=8192, batch=1, card=12,
               label="TRL best: packing bfd + flex + liger, full ckpt"),
    "b": dict(path="ethsft", packing=1, attn="varlen", liger="auto", ckpt="fit", rows=2048, batch=1, accum=4,
              graphs=1, compile=1, card=12, label="ethsft fast path (the 12GB preset)"),
    "b80": dict(path="ethsft", packing=1, attn="varlen", liger="auto", ckpt="fit", rows=16384, batch=1, vram=80,
                card=80, label="ethsft fast path, 80GB preset"),
}
INT_KNOBS = ("rows", "batch", "accum", "packing", "offload", "compile", "graphs", "bits")
FLOAT_KNOBS = ("vram", "card")
KNOBS = INT_KNOBS + FLOAT_KNOBS + ("path", "attn", "liger", "ckpt", "optim", "label")
PRESET_KNOBS = {"rows": "data.max_length", "batch": "training.per_device_train_batch_size",
                "accum": "training.gradient_accumulation_steps", "vram": "optimization.vram_budget_gib",
                "compile": "optimization.compile", "graphs": "optimization.cuda_graphs", "card": None}


def parse_modes(text: str) -> list[tuple[str, dict]]:
    """``"a,a',b:attn=flex_attention;rows=4096"`` -> [(name, knobs)]; a name is a base mode plus overrides."""
    out = []
    for part in [p.strip() for p in text.split(",") if p.strip()]:
        base, _, rest = part.partition(":")
        if base.endswith(".yaml"):
            if not presets.config(base).is_file():
                raise ValueError(f"unknown preset {base!r}; the shipped presets: {', '.join(sorted(PRESET_CARDS))}")
            knobs = dict(base="preset", config=base, path="preset", ckpt="preset", card=PRESET_CARDS.get(base),
                         label=f"preset {base}")
        elif base not in MODES:
            raise ValueError(f"unknown mode {base!r}; choose from {', '.join(MODES)} or a preset NAME.yaml "
                             "(with :key=value;... overrides)")
        else:
            knobs = dict(MODES[base], base=base)
        for kv in [x for x in rest.split(";") if x]:
            k, _, v = kv.partition("=")
            if k not in KNOBS:
                raise ValueError(f"mode {part!r}: unknown knob {k!r}")
            if k == "bits" and v not in ("4", "16"):
                raise ValueError(f"mode {part!r}: bits is 4 (NF4) or 16 (bf16 weights), not {v!r}")
            knobs[k] = int(v) if k in INT_KNOBS else (float(v) if k in FLOAT_KNOBS else v)
            if knobs["base"] == "preset":
                if k not in PRESET_KNOBS:
                    raise ValueError(f"mode {part!r}: a preset takes only {', '.join(PRESET_KNOBS)}")
                knobs.setdefault("given", {})[k] = knobs[k]
        if rest:
            knobs["label"] = MODES.get(base, {}).get("label", f"preset {base}") + f" [{rest}]"
        out.append((part, knobs))
    return out


# --------------------------------------------------------------------------------------------------------------
def prepare_data(root: Path, samples: int, seed: int = 0) -> Path:
    from ethsft.eth.prepare import prepare
    from ethsft.eth.synth import generate_rows, write_rows

    out = root / "datasets"
    if (out / "train.jsonl").exists():
        return out
    raw = root / "decoded.csv"
    write_rows(raw, generate_rows(samples, seed=seed))
    prepare(raw, out, seed=seed, progress=False, count_tokens=False)
    return out


def mode_settings(knobs: dict, shape: str, dataset: Path, output: Path, steps: int, vram: float,
                  sets: tuple[str, ...] = ()):
    from ethsft.config.schema import load_settings

    cuda = _cuda()
    if knobs["base"] == "preset":
        given = {PRESET_KNOBS[k]: bool(v) if k in ("compile", "graphs") else v
                 for k, v in knobs.get("given", {}).items() if PRESET_KNOBS[k]}
        # the bench's own settings last: on CPU they turn compile and graphs off whatever a variant asks
        return load_settings(presets.config(knobs["config"]),
                             {**given, **_bench_overrides(shape, dataset, output, steps, cuda)}, list(sets))
    liger = _liger_on(knobs)
    ckpt = str(knobs["ckpt"])
    attn = knobs["attn"]
    overrides = {
        **_bench_overrides(shape, dataset, output, steps, cuda),
        "model.attn_implementation": "sdpa" if attn == "varlen" else attn,
        "data.max_length": int(knobs["rows"]), "data.packing": bool(knobs["packing"]),
        "training.per_device_train_batch_size": int(knobs["batch"]), "training.gradient_accumulation_steps": int(knobs.get("accum", 1)),
        "optimization.gradient_checkpointing": ckpt == "all",
        "optimization.use_liger_kernel": liger,
        "quantization.load_in_4bit": knobs.get("bits", 4) == 4,  # parse_modes made it an int
    }
    if knobs.get("optim"):
        overrides["optimization.optim"] = knobs["optim"]
    # the fast path as a preset turns it on (ethsft.train.build_trainer); TRL's own modes (a, a') turn it off,
    # whatever the 12GB preset they start from says
    fast = knobs["path"] == "ethsft"
    # layer compilation is for the GPU's kernels: not on CPU (tests on a tiny shape)
    overrides.update({"optimization.fast_path": fast, "optimization.compile": bool(knobs.get("compile", 0)) and cuda,
                      "optimization.cuda_graphs": bool(knobs.get("graphs", 0)) and fast,
                      "optimization.vram_budget_gib": float(knobs.get("vram", vram)) if fast and ckpt == "fit" else None})
    return load_settings(presets.config("training_config.yaml"), overrides, list(sets))


def _bench_overrides(shape: str, dataset: Path, output: Path, steps: int, cuda: bool) -> dict:
    """What every mode shares: the embedded model, the bench's data, ``steps`` steps, no eval/save/logging."""
    out = {"model.base_model": f"embedded:{shape}", "model.cache_dir": None, "data.dataset_dir": str(dataset),
           "training.output_dir": str(output), "training.overwrite": True, "training.max_steps": steps,
           "training.warmup_steps": 0,
           "logging.eval_strategy": "no", "logging.save_strategy": "no", "logging.load_best_model_at_end": False,
           "logging.logging_steps": 1000, "logging.report_to": "none", "logging.eval_accuracy_samples": 0}
    if not cuda:
        out.update({"quantization.bnb_4bit_compute_dtype": "float32", "optimization.optim": "adamw_torch",
                    "optimization.bf16": False, "optimization.compile": False, "optimization.cuda_graphs": False})
    return out


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _liger_on(knobs) -> bool:
    from ethsft.fastpath.runtime import liger_available

    v = str(knobs.get("liger", "0"))
    return liger_available() and _cuda() if v == "auto" else v in ("1", "true", "True")


def build_mode(name: str, knobs: dict, shape: str, dataset: Path, total_steps: int, vram: float, workdir: Path,
               sets: tuple[str, ...] = ()):
    """The trainer of one mode, fast-path changes and checkpointing plan applied: (prepared, done, plan).
    ``sets``: further ``section.key=value`` overrides (``--set``)."""
    from ethsft.fastpath.attention import use_varlen_attention
    from ethsft.fastpath.checkpointing import decoder_layers, set_checkpointed_layers
    from ethsft.config import hf as hf_args
    from ethsft.model import loading as modeling
    from ethsft.training.recipe import build_trainer

    vram = float(knobs.get("vram", vram))
    ckpt = str(knobs["ckpt"])
    s = mode_settings(knobs, shape, dataset, workdir / f"run-{abs(hash(name)) % 10**8}", total_steps, vram, sets)
    if knobs["base"] == "preset":  # what the preset itself says, for the report
        knobs.update(rows=s.data.max_length, liger="1" if hf_args.liger_on(s) else "0",
                     attn=s.model.attn_implementation, path="ethsft" if s.optimization.fast_path else "trl",
                     vram=s.optimization.vram_budget_gib or vram)
    ethsft_path = knobs["path"] == "ethsft"
    done = {}
    orig_load, orig_cfg = modeling.load_model, hf_args.sft_config

    def load_model(*a, **k):
        model = orig_load(*a, **k)
        if not ethsft_path and knobs["attn"] == "varlen":
            done["attn_implementation"] = use_varlen_attention(model)
        return model

    def sft_config(*a, **k):
        cfg = orig_cfg(*a, **k)
        cfg.disable_tqdm = True
        return cfg

    modeling.load_model, hf_args.sft_config = load_model, sft_config
    try:
        t0 = time.perf_counter()
        prepared = build_trainer(s)
        done["build_s"] = time.perf_counter() - t0
    finally:
        modeling.load_model, hf_args.sft_config = orig_load, orig_cfg
    trainer = prepared.trainer
    n_layers = len(decoder_layers(trainer.model))
    fast = dict(getattr(trainer, "ethsft_fast_path", {}))
    plan = fast.pop("checkpointing", None)
    done.update(fast)
    if ckpt == "none":
        set_checkpointed_layers(trainer.model, 0)
        plan = {"checkpointed": 0}
    elif ckpt.isdigit():
        plan = {"checkpointed_layers": set_checkpointed_layers(trainer.model, int(ckpt), bool(knobs.get("offload")))}
        plan["checkpointed"] = int(ckpt)
    elif plan is None:  # "all" (TRL checkpoints every layer), or "fit" where there is no GPU to measure on (none)
        plan = {"checkpointed": n_layers if trainer.args.gradient_checkpointing else 0}
    plan.setdefault("layers", n_layers)
    return prepared, done, plan


def run_mode(name: str, knobs: dict, shape: str, dataset: Path, warmup: int, steps: int, vram: float,
             workdir: Path) -> dict:
    """Build and train one mode in this process; returns its measurements."""
    import torch
    from transformers import TrainerCallback

    from ethsft.planning.hardware import cap_memory

    if knobs.get("cap_gib") and torch.cuda.is_available():
        cap_memory(float(knobs["cap_gib"]))
    prepared, done, plan = build_mode(name, knobs, shape, dataset, warmup + steps, vram, workdir)
    trainer = prepared.trainer
    build_s = done.pop("build_s")
    n_layers = plan["layers"]
    liger = _liger_on(knobs)
    checkpointed = plan.get("checkpointed", n_layers)

    class Timer(TrainerCallback):
        def __init__(self):
            self.marks = []

        def _mark(self, state):
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            self.marks.append((time.perf_counter(), state.num_input_tokens_seen))

        def on_train_begin(self, args, state, control, **kw):
            self._mark(state)
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()

        def on_step_end(self, args, state, control, **kw):
            self._mark(state)

    timer = Timer()
    trainer.add_callback(timer)
    trainer.train()
    marks = timer.marks
    step_s = [b[0] - a[0] for a, b in zip(marks, marks[1:])]
    step_tok = [b[1] - a[1] for a, b in zip(marks, marks[1:])]
    m0 = marks[min(warmup, len(marks) - 1)]
    tokens = marks[-1][1] - m0[1]
    seconds = marks[-1][0] - m0[0]
    res = {
        "mode": name, "label": knobs["label"], "knobs": knobs, "cap_gib": knobs.get("cap_gib"), "fastpath": done, "checkpointing": plan,
        "checkpointed_fraction": checkpointed / max(n_layers, 1), "liger": liger,
        "attn_implementation": trainer.model.config._attn_implementation,
        "build_s": build_s, "measured_steps": len(step_s) - warmup, "tokens": tokens, "seconds": seconds,
        "tokens_per_s": tokens / seconds if seconds > 0 else None,
        "median_step_tokens_per_s": median_step_rate(step_s[warmup:], step_tok[warmup:]),
        "step_s": step_s, "step_tokens": step_tok,
        "train_loss_last": next((h.get("train_loss") for h in reversed(trainer.state.log_history)
                                 if "train_loss" in h), None),
    }
    graphed = getattr(trainer, "graphed", None)
    if graphed is not None:
        res["cuda_graphs"] = {"replays": graphed.replays, "eager": graphed.eager,
                              "shape": vars(graphed.shape)}
    if torch.cuda.is_available():
        res["peak_allocated_gib"] = torch.cuda.max_memory_allocated() / GiB
        res["peak_reserved_gib"] = torch.cuda.max_memory_reserved() / GiB
        res["device"] = torch.cuda.get_device_name(0)
    lengths = [n for r in prepared.lengths if r.split == "train" for n in r.lengths]
    res["flops"] = flops_per_token(trainer.model.config, lengths, int(knobs["rows"]), res["checkpointed_fraction"])
    return res


def median_step_rate(step_s: list[float], step_tokens: list[int]) -> float | None:
    """Real tokens/s of the median measured step: the steady rate, which one slow step (a recompilation,
    say) moves far less than it moves the window's mean."""
    rates = [t / s for s, t in zip(step_s, step_tokens) if s > 0]
    return statistics.median(rates) if rates else None


def flops_per_token(cfg, lengths: list[int], max_length: int, ckpt_fraction: float) -> dict:
    """FLOPs per real token of the model ``cfg`` (its HF config) trained on samples ``lengths`` long: the
    estimate's count (ethsft.planning.speed.flops_per_token) at the mean attended context, without LoRA's share,
    over 2 passes (MFU) and over 2 + the checkpointed fraction (HFU)."""
    from ethsft.planning.shapes import shape_from_config
    from ethsft.planning.speed import flops_per_token as count

    shape = shape_from_config(cfg.to_dict(), getattr(cfg, "name_or_path", "") or "bench", "model config")
    lens = [min(n, max_length) for n in lengths] or [1]
    c = sum(n * (n + 1) / 2 for n in lens) / sum(lens)
    return {"matmul_params": shape.linear_params + shape.vocab * shape.hidden, "mean_context": c,
            "model_flops_per_token": count(shape, c),
            "hardware_flops_per_token": count(shape, c, 2 + ckpt_fraction)}


def peak_tflops(device: str | None, given: float | None) -> float | None:
    """``--peak-tflops`` if given, else the dense bf16 peak of ``device`` from ethsft's GPU table."""
    from ethsft.planning.hardware import gpu_by_name

    if given:
        return given
    gpu = gpu_by_name(device)
    return gpu.bf16_tflops if gpu else None


# --------------------------------------------------------------------------------------------------------------
def run_bench(shape: str = "mistral-7b", modes: str = "a,a',b", vram: float = 12.0, warmup: int = 2, steps: int = 6,
              samples: int = 2000, out: str | None = None, isolate: bool | None = None, mode_timeout: int = 180,
              peak: float | None = None, echo=print, cap: str = "auto") -> dict:
    """``cap``: "auto" (each mode under its card's cap), "none", or GiB for every mode."""
    from ethsft.model.embedded import resolve
    from ethsft.planning.hardware import card_cap_gib

    parsed = parse_modes(modes)
    for _, knobs in parsed:
        if cap == "auto":
            knobs["cap_gib"] = card_cap_gib(float(knobs["card"])) if knobs.get("card") else None
        else:
            knobs["cap_gib"] = None if cap == "none" else float(cap)
    isolate = _cuda() if isolate is None else isolate
    work = Path(tempfile.mkdtemp(prefix="ethsft-bench-"))
    t0 = time.perf_counter()
    caps = ", ".join(f"{n} {k['cap_gib']:g}" for n, k in parsed if k.get("cap_gib"))
    echo(f"ethsft bench: model {shape}, modes {', '.join(n for n, _ in parsed)}, budget {vram:g} GiB, "
         f"{warmup}+{steps} steps" + (f"; memory caps (GiB): {caps}" if caps and _cuda() else ""))
    path = resolve(f"embedded:{shape}")
    if _cuda():
        import torch

        torch.cuda.empty_cache()
    echo(f"  model ready ({time.perf_counter() - t0:.0f} s): {path}")
    dataset = prepare_data(work, samples)
    echo(f"  data ready ({time.perf_counter() - t0:.0f} s): {dataset}")
    results = []
    for name, knobs in parsed:
        t = time.perf_counter()
        if isolate:
            res = _run_child(name, knobs, shape, dataset, warmup, steps, vram, work, mode_timeout)
        else:
            try:
                res = run_mode(name, knobs, shape, dataset, warmup, steps, vram, work)
            except Exception as e:  # one failing mode must not lose the others
                res = {"mode": name, "label": knobs["label"], "error": f"{type(e).__name__}: {e}"[:2000]}
        res["wall_s"] = time.perf_counter() - t
        results.append(res)
        if out:  # partial results survive an outer timeout
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(json.dumps({"partial": True, "modes": results}, indent=2, default=str),
                                 encoding="utf-8")
        echo(f"  {name}: " + (f"{res['tokens_per_s']:.0f} tok/s, peak {res.get('peak_allocated_gib', 0):.1f} GiB "
                              f"({res['wall_s']:.0f} s)" if res.get("tokens_per_s") else f"FAILED: {res.get('error')}"))
    summary = summarize(results, vram, peak)
    report = {"model_shape": shape, "vram_budget_gib": vram, "warmup_steps": warmup, "measured_steps": steps,
              "samples": samples, "modes": results, "summary": summary, "total_s": time.perf_counter() - t0,
              "environment": _env()}
    if out:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        Path(out).write_text(json.dumps(report, indent=2, default=str), encoding="utf-8")
    echo("")
    echo(table(report))
    return report


def summarize(results: list[dict], vram: float, peak: float | None) -> dict:
    ok = {r["mode"]: r for r in results if r.get("tokens_per_s")}
    for r in ok.values():
        p = peak_tflops(r.get("device"), peak)
        if p:
            r["mfu"] = r["tokens_per_s"] * r["flops"]["model_flops_per_token"] / (p * 1e12)
            r["hfu"] = r["tokens_per_s"] * r["flops"]["hardware_flops_per_token"] / (p * 1e12)
            r["peak_tflops"] = p
    base_a = next((r for r in ok.values() if r.get("knobs", {}).get("base") == "a"), None)
    base_ap = next((r for r in ok.values() if r.get("knobs", {}).get("base") == "a'"), None)
    b = next((r for r in ok.values() if r.get("knobs", {}).get("base") == "b"), None)
    for r in ok.values():
        if base_a:
            r["vs_a"] = r["tokens_per_s"] / base_a["tokens_per_s"]
        if base_ap:
            r["vs_a_prime"] = r["tokens_per_s"] / base_ap["tokens_per_s"]
            if r.get("median_step_tokens_per_s") and base_ap.get("median_step_tokens_per_s"):
                r["median_vs_a_prime"] = r["median_step_tokens_per_s"] / base_ap["median_step_tokens_per_s"]
    within = [r for r in ok.values() if r.get("knobs", {}).get("base") not in ("a", "a'") and r.get("knobs", {}).get("path") == "ethsft"
              and float(r["knobs"].get("vram", vram)) <= vram and r.get("peak_allocated_gib", 0) <= vram]
    best = max(within, key=lambda r: r["tokens_per_s"], default=None)
    return {"best_fast_path_within_budget": best["mode"] if best else None,
            "b_mode": b["mode"] if b else None, "a_mode": base_a["mode"] if base_a else None,
            "a_prime_mode": base_ap["mode"] if base_ap else None,
            "b_over_a": b.get("vs_a") if b else None,
            "b_over_a_prime": b.get("vs_a_prime") if b else None,
            "best_over_a_prime": best.get("vs_a_prime") if best else None}


def table(report: dict) -> str:
    head = ("| mode | setup | cap GiB | real tok/s | median step tok/s | peak alloc GiB | peak reserved GiB | ckpt layers "
            "| MFU | HFU | x a | x a' | x a' (median steps) |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    rows = []
    for r in report["modes"]:
        if not r.get("tokens_per_s"):
            cap = r.get("knobs", {}).get("cap_gib") or "-"
            empty = " |" * (head[0].count("|") - 5)  # the columns after the failure's message
            rows.append(f"| {r['mode']} | {r['label']} | {cap} | failed: {str(r.get('error'))[:80]} |{empty}")
            continue
        f = lambda v, fmt: (fmt % v) if isinstance(v, (int, float)) else "-"  # noqa: E731
        ck = r.get("checkpointing", {})
        rows.append(f"| {r['mode']} | {r['label']} | {f(r.get('cap_gib'), '%g')} | {r['tokens_per_s']:.0f} | "
                    f"{f(r.get('median_step_tokens_per_s'), '%.0f')} | {f(r.get('peak_allocated_gib'), '%.1f')}"
                    f" | {f(r.get('peak_reserved_gib'), '%.1f')} | {ck.get('checkpointed', '-')} | "
                    f"{f(r.get('mfu'), '%.3f')} | {f(r.get('hfu'), '%.3f')} | "
                    f"{f(r.get('vs_a'), '%.2f')} | {f(r.get('vs_a_prime'), '%.2f')} | {f(r.get('median_vs_a_prime'), '%.2f')} |")
    s = report["summary"]
    tail = (f"\nb/a = {s['b_over_a']}, b/a' = {s['b_over_a_prime']}; best fast path within "
            f"{report['vram_budget_gib']:g} GiB: {s['best_fast_path_within_budget']} "
            f"(x a' {s['best_over_a_prime']})\nMFU = real tok/s x (4P + 12 L h c) / peak; HFU adds checkpoint "
            "recompute (see ethsft/experiments/bench.py).")
    return "\n".join(head + tuple(rows)) + tail


def _env() -> dict:
    import importlib.metadata as md

    env = {}
    for pkg in ("torch", "transformers", "trl", "peft", "bitsandbytes", "liger-kernel"):
        try:
            env[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            env[pkg] = None
    return env


def _run_child(name, knobs, shape, dataset, warmup, steps, vram, work, timeout) -> dict:
    result = work / f"result-{abs(hash(name)) % 10**8}.json"
    job = dict(name=name, knobs=knobs, shape=shape, dataset=str(dataset), warmup=warmup, steps=steps, vram=vram,
               work=str(work), result=str(result))
    try:
        proc = subprocess.run([sys.executable, "-m", "ethsft.experiments.bench", json.dumps(job)], capture_output=True,
                              text=True, timeout=timeout, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"})
    except subprocess.TimeoutExpired as e:
        tail = (e.stderr or b"")[-1500:] if isinstance(e.stderr, bytes) else (e.stderr or "")[-1500:]
        return {"mode": name, "label": knobs["label"], "error": f"timed out after {timeout} s", "stderr_tail": str(tail)}
    if result.exists():
        return json.loads(result.read_text(encoding="utf-8"))
    return {"mode": name, "label": knobs["label"], "error": f"exit {proc.returncode}",
            "stderr_tail": (proc.stderr or "")[-3000:]}


def _child(job: dict) -> None:
    try:
        res = run_mode(job["name"], job["knobs"], job["shape"], Path(job["dataset"]), job["warmup"], job["steps"],
                       job["vram"], Path(job["work"]))
    except Exception as e:
        import traceback

        res = {"mode": job["name"], "label": job["knobs"]["label"], "error": f"{type(e).__name__}: {e}"[:2000],
               "traceback": traceback.format_exc()[-3000:]}
    Path(job["result"]).write_text(json.dumps(res, default=str), encoding="utf-8")


if __name__ == "__main__":
    _child(json.loads(sys.argv[1]))
