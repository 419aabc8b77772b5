"""The estimate as ``ethsft estimate`` prints it: text for people, JSON for scripts."""

from __future__ import annotations

from ethsft.config.schema import Settings
from ethsft.planning.advice import fit_verdict
from ethsft.planning.estimate import RunEstimate
from ethsft.planning.shapes import lora_params


def fmt_s(seconds: float) -> str:
    """Seconds for people: the training report's h/m/s, or two decimals under a second."""
    from ethsft.training.reporting import fmt_duration

    return fmt_duration(seconds) if seconds >= 1 else f"{seconds:.2f}s"


def report(s: Settings, est: RunEstimate) -> str:
    sh = est.shape
    out = [f"Model: {s.model.base_model} ({sh.total_params / 1e9:.2f}B params: {sh.layers} layers, hidden "
           f"{sh.hidden}, MLP {sh.intermediate}, {sh.heads} heads / {sh.kv_heads} KV, vocab {sh.vocab}; "
           f"shape from {sh.source})"]
    lo = s.lora
    tm = lo.target_modules if isinstance(lo.target_modules, str) else ",".join(lo.target_modules)
    out.append(f"LoRA: r {lo.r} on {tm}: {lora_params(s, sh):,} trainable params")
    if est.dataset is not None:
        ds = est.dataset
        out.append(f"Dataset (tokens with {ds.tokenizer}'s tokenizer and chat template, "
                   f"max_length {s.data.max_length}, overlong: {s.data.overlong}):")
        for note in ds.notes:
            out.append(f"  note: {note}")
        for sp in ds.splits.values():
            out.append(f"  {sp.name:<10} {sp.count:>7,} samples  {sp.total:>11,} tokens  mean {sp.total / sp.count:,.0f}"
                       f"  p50 {sp.percentile(50):,}  p95 {sp.percentile(95):,}  max {max(sp.lengths):,}"
                       f"  over max_length: {sp.overlong}")
        t = s.training
        what = "packed rows" if s.data.packing else "samples"
        out.append(f"Steps: {est.samples:,} {what} / ({t.per_device_train_batch_size} micro x "
                   f"{t.gradient_accumulation_steps} accumulation x 1 process) = {est.steps_per_epoch:,} steps per "
                   f"epoch; {est.total_steps:,} steps in all"
                   + (f" (max_steps)" if t.max_steps > 0 else f" ({t.num_train_epochs:g} epochs)"))
    m = est.memory
    out.append(f"Peak VRAM: {m.peak_allocated_gib:.1f} GB allocated by torch, ~{m.card_gib:.1f} GB on the card "
               f"(at {est.assumed})")
    out.append(f"  {m.breakdown()}")
    if est.gpu is None:
        out.append("GPU: none detected and none named (--gpu rtx3060|rtx4090|a100|h100|...): no time estimate")
        return "\n".join(out)
    g = est.gpu
    how = "detected" if est.gpu_detected else "named"
    guess = " (unknown card: throughput guessed)" if g.key == "unknown" else ""
    out.append(f"GPU: {g.name} ({how}): {g.vram_gib:.1f} GB, {g.bf16_tflops:g} bf16 TFLOPs{guess}")
    out.append(f"Fit: {fit_verdict(s, g, est)}")
    if not g.bf16 and s.optimization.bf16:
        out.append("  note: this GPU has no bfloat16; training falls back to float16")
    if est.time is not None:
        tm_ = est.time
        out.append(f"Speed: {tm_.step_s:.2f} s/step ({tm_.micro_step_s:.2f} s per micro-batch, {tm_.bound}), "
                   f"~{tm_.tokens_per_s:,.0f} tokens/s (padded), {tm_.flops_per_token / 1e9:.1f} GFLOP/token")
    if est.train_s is not None:
        line = f"Time: {fmt_s(est.train_s)} for {est.total_steps:,} steps"
        if est.eval_s:
            line += (f" + {fmt_s(est.eval_s)} for {est.evals} evaluation{'s' if est.evals > 1 else ''}"
                     f" = {fmt_s(est.train_s + est.eval_s)}")
        out.append(line + " (model loading not included)")
    elif est.dataset is None:
        out.append("Time: pass --dataset to count steps")
    return "\n".join(out)


def to_json(s: Settings, est: RunEstimate) -> dict:
    d = {"base_model": s.model.base_model, "params": est.shape.total_params,
         "peak_allocated_gb": est.memory.peak_allocated_gib, "card_gb": est.memory.card_gib,
         "memory_parts_gb": est.memory.parts, "outside_allocator_gb": est.memory.outside_allocator,
         "peak_assumes": est.assumed, "steps_per_epoch": est.steps_per_epoch, "total_steps": est.total_steps,
         "gpu": est.gpu.key if est.gpu else None, "fits": est.fits}
    if est.time:
        d.update(step_s=est.time.step_s, micro_step_s=est.time.micro_step_s, tokens_per_s=est.time.tokens_per_s,
                 train_s=est.train_s, eval_s=est.eval_s)
    if est.dataset:
        d["splits"] = {k: {"samples": v.count, "tokens": v.total, "max": max(v.lengths), "overlong": v.overlong}
                       for k, v in est.dataset.splits.items()}
    return d
