"""The training recipe, in stages: seed and output folder -> data -> tokenizer -> 4-bit model -> trainer -> train
-> save -> evaluate -> summary. ``run(settings)`` is what every launcher ends up calling (``ethsft.cli.train``)."""

from __future__ import annotations

import shlex
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ethsft.units import GiB
from ethsft.config.schema import Settings
from ethsft.training.guards import TrainingStopped
from ethsft.filenames import LOG_FILE, PLOT_FILE, SUMMARY_FILE
from ethsft.training.reporting import ProgressBar, ProgressReporter, fmt_duration, say

@dataclass
class Prepared:
    """Everything `run` needs after the stages before training."""

    trainer: object
    out: Path
    log_path: Path | None
    is_main: bool
    records: dict
    lengths: list
    memory_after_load_gb: float | None
    resume: Path | None
    started: float
    guard: object = None  # guards.StopGuard: SIGTERM/SIGINT (end of a step or evaluation batch), NaN loss
    lock: object = None  # run_folder.RunLock on the output folder (main process)


def build_trainer(s: Settings, resume_from_checkpoint: str | None = None,
                  deepspeed_config: str | None = None) -> Prepared:
    """Seed, output folder, data, tokenizer, 4-bit model, the trainer with LoRA: every stage before training."""
    import torch
    from accelerate import PartialState
    from transformers import EarlyStoppingCallback, set_seed

    from ethsft.data.records import intent_records, load_splits
    from ethsft.data.sources import read_splits, split_names
    from ethsft.fastpath.runtime import configure_runtime
    from ethsft.training.guards import OverfitWarning, StopGuard
    from ethsft.training.trainer import IntentSFTTrainer
    from ethsft.config.hf import check, liger_on, lora_config, resolve_precision, sft_config
    from ethsft.fastpath.switches import fast_path_on, fitted_checkpointing, packed_rows
    from ethsft.model.loading import (check_target_modules, keep_4bit_layout_for_zero3, load_model, load_tokenizer,
                                      memory_gb, model_source)
    from ethsft.training.outputs import find_resume_checkpoint
    from ethsft.training.resume import check_resumable
    from ethsft.training.run_folder import claim

    # --- seed, output folder, resume point -------------------------------------------------------------
    check(s)  # what TRL, peft and transformers would refuse, before anything is written or loaded
    started = time.time()
    state = PartialState(cpu=not torch.cuda.is_available())  # CPU runs under torchrun use gloo DDP
    is_main = state.is_main_process
    set_seed(s.training.seed)
    configure_runtime()  # e.g. cuDNN SDPA off: it rebuilds a plan for every new sequence length
    out = Path(s.training.output_dir)
    resume = find_resume_checkpoint(out, resume_from_checkpoint)
    if resume is not None:
        check_resumable(resume, s)
    lock = claim(s.training.output_dir, s.training.overwrite, resume,
                 {"the dataset": s.data.dataset_dir, "the base model": s.model.base_model,
                  "the checkpoint": resume and str(resume)}) if is_main else None
    state.wait_for_everyone()
    log_path = out / LOG_FILE if is_main else None
    precision = resolve_precision(s)
    if precision.note:
        say(f"Note: {precision.note}", log_path, is_main)

    # --- data ------------------------------------------------------------------------------------------
    source = model_source(s)
    split_records = read_splits(s.data.dataset_dir, s.data.dataset_config, split_names(s.data))
    if not Path(source).exists():  # a hub id: gated/missing and too little disk are said before the download
        from ethsft.model.hub import check_download

        check_download(source, s.model.cache_dir, s.model.revision)
    check_target_modules(s, source)
    tokenizer = load_tokenizer(s, source)
    say("\nLoading dataset...", log_path, is_main)
    records, tokenized = load_splits(split_records, tokenizer, s.data, lambda line: say(line, log_path, is_main))
    train_ds = tokenized["train"][0]
    eval_ds = tokenized["validation"][0] if "validation" in tokenized else None
    if eval_ds is None and s.logging.eval_strategy != "no":
        off = "evaluation" + (", load_best_model_at_end" if s.logging.load_best_model_at_end else "") + (
            " and early stopping" if s.training.early_stopping_patience else "")
        say(f"Note: no validation split in {s.data.dataset_dir}: {off} off; the adapter saved is the last step's",
            log_path, is_main)

    # --- model -----------------------------------------------------------------------------------------
    say(f"\nLoading base model: {s.model.base_model}", log_path, is_main)
    if s.quantization.load_in_4bit:
        say(f"Applying 4-bit quantization ({s.quantization.bnb_4bit_quant_type}, "
            f"double quant {'on' if s.quantization.bnb_4bit_use_double_quant else 'off'})...", log_path, is_main)
    model = load_model(s, precision, source)
    if fast_path_on(s):
        from ethsft.fastpath.prepare import prepare_model

        prepare_model(model, attention="varlen" if packed_rows(s) else "as configured", liger=liger_on(s),
                      compile=s.optimization.compile)
    loaded = memory_gb()
    footprint = model.get_memory_footprint() / GiB
    say(f"Model loaded: {loaded:.1f}GB VRAM" if loaded is not None else f"Model loaded: {footprint:.2f}GB (CPU)",
        log_path, is_main)

    # --- trainer ---------------------------------------------------------------------------------------
    extra = {"deepspeed": deepspeed_config} if deepspeed_config else {}
    args = sft_config(s, precision, **extra)
    from transformers.integrations import is_deepspeed_zero3_enabled

    if is_deepspeed_zero3_enabled():  # known once the DeepSpeed config is part of the arguments
        keep_4bit_layout_for_zero3(model)
        if s.quantization.load_in_4bit and s.quantization.bnb_4bit_quant_storage in (None, "uint8"):
            say("Note: DeepSpeed ZeRO-3 with 4-bit weights stored as uint8: the PEFT/TRL recipe (and the verified path) "
                "is --set quantization.bnb_4bit_quant_storage=bfloat16 (the compute dtype)", log_path, is_main)
    if eval_ds is None:
        args.eval_strategy = "no"
        args.load_best_model_at_end = False
    callbacks = [ProgressReporter(log_path)] if is_main else []
    if s.training.early_stopping_patience and eval_ds is not None:
        callbacks.append(EarlyStoppingCallback(early_stopping_patience=s.training.early_stopping_patience))
    callbacks.append(OverfitWarning(lambda line: say(line, log_path, is_main),
                                    early_stopping=bool(s.training.early_stopping_patience)))
    guard = StopGuard()
    callbacks.append(guard)
    say("\nInitializing LoRA adapters...", log_path, is_main)
    trainer = IntentSFTTrainer(model=model, args=args, train_dataset=train_ds, eval_dataset=eval_ds,
                               processing_class=tokenizer,
                               peft_config=lora_config(s, model.config.num_hidden_layers), callbacks=callbacks)
    guard.trainer = trainer
    if eval_ds is not None:  # intent accuracy beside eval_loss
        trainer.track_intent_accuracy(intent_records(records.get("validation", [])), s.logging.eval_accuracy_samples,
                                      s.data.system_prompt)
    _finish_trainer(trainer, s, out, is_main, precision)
    if fast_path_on(s):
        _fast_path(trainer, s, fitted_checkpointing(s), lambda line: say(line, log_path, is_main))
    trainable, total = trainer.model.get_nb_trainable_parameters()
    say(f"Trainable parameters: {trainable:,} ({100 * trainable / total:.2f}% of total)", log_path, is_main)
    world = state.num_processes
    micro, accum = s.training.per_device_train_batch_size, s.training.gradient_accumulation_steps
    say(f"Effective batch: {micro} (micro) x {accum} (accumulation) x {world} (processes) = {micro * accum * world}",
        log_path, is_main)
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    return Prepared(trainer, out, log_path, is_main, records, [r for _, r in tokenized.values()], loaded,
                    resume, started, guard, lock)


def _finish_trainer(trainer, s: Settings, out: Path, is_main: bool, precision) -> None:
    """What SFTTrainer sets differently from an ethsft run: progress display, TensorBoard folder, dtypes."""
    import torch
    from transformers.integrations import TensorBoardCallback
    from transformers.trainer_callback import ProgressCallback

    trainer.remove_callback(ProgressCallback)
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, TensorBoardCallback):
            callback.logging_dir = str(out / "logs")  # `tensorboard --logdir <output>/logs`, as in the guide
    if is_main:
        trainer.add_callback(ProgressBar)
    # TRL casts trainable parameters to bf16 for QLoRA. Whole modules (modules_to_save) must stay in the dtype
    # the hidden states arrive in, or their matmuls fail outside autocast (generation); on CPU, where training
    # runs in fp32, every trainable parameter goes back to fp32, which also gives ZeRO-3 the single dtype it needs.
    on_cpu = not torch.cuda.is_available()
    for name, param in trainer.model.named_parameters():
        if param.requires_grad and (on_cpu or "modules_to_save" in name):
            param.data = param.data.to(torch.float32 if on_cpu else precision.compute_dtype)


def _fast_path(trainer, s: Settings, fit: bool, echo) -> None:
    from ethsft.fastpath.prepare import prepare_trainer

    graph_rows = s.data.max_length if s.optimization.cuda_graphs else None  # validate(): packing is on
    done = prepare_trainer(trainer, s.optimization.vram_budget_gib if fit else None, s.optimization.compile,
                           graph_rows)
    line = f"Fast path: {trainer.model.config._attn_implementation} attention"
    if "compiled_layers" in done:
        line += f", {done['compiled_layers']} decoder layers compiled"
        if done.get("tensor_dequant_linears"):
            line += f" ({done['tensor_dequant_linears']} 4-bit linears dequantised inside them)"
    elif "lean_lora_dropout" in done:
        line += f", LoRA dropout folded into {done['lean_lora_dropout']} adapters"
    line += ", Liger kernels" if done.get("liger_applied") else ""
    if done.get("cuda_graph_rows"):
        line += f", micro-batches of {done['cuda_graph_rows']} tokens replayed as CUDA graphs"
    if done.get("cuda_graphs_off"):
        line += f", no CUDA graphs ({done['cuda_graphs_off']})"
    plan = done.get("checkpointing")
    if plan:
        line += (f"; {plan['checkpointed']} of {plan['layers']} decoder layers checkpointed to fit "
                 f"{plan['budget_gib']:g} GiB")
        if "predicted_peak_gib" in plan:
            line += f" (predicted peak {plan['predicted_peak_gib']:.1f} GiB)"
    echo(line)


def resume_command(argv: list[str] | None = None) -> str:
    """This process's command line with ``--resume-from-checkpoint latest`` (and without ``--overwrite``)."""
    argv = list(sys.argv if argv is None else argv)
    prog = Path(argv[0]).name if argv else ""
    # `python -m ethsft train ...` runs ethsft/__main__.py; `python -m ethsft.train` and launch/train.py, train.py
    head = {"__main__.py": ["python", "-m", "ethsft"]}.get(prog) or (
        ["python", "-m", "ethsft.train"] if prog in ("train.py", "-m", "") else [prog])
    args, skip = [], False
    for a in argv[1:]:
        if skip:
            skip = False
            continue
        if a == "--resume-from-checkpoint":
            skip = True
            continue
        if a.startswith("--resume-from-checkpoint=") or a == "--overwrite" or a.startswith("--local_rank") \
                or a.startswith("--local-rank"):
            continue
        args.append(a)
    return " ".join(shlex.quote(x) for x in head + args + ["--resume-from-checkpoint", "latest"])


def _train(p: Prepared, s: Settings):
    """``trainer.train`` with the stop guard's signal handlers on; stops (signal, NaN, OOM) become TrainingStopped."""
    import signal

    import torch

    from ethsft.training.guards import last_complete_checkpoint, oom_message

    trainer, guard = p.trainer, p.guard
    if guard is not None:
        guard.install()
    try:
        result = trainer.train(resume_from_checkpoint=str(p.resume) if p.resume else None)
    except torch.OutOfMemoryError:
        step = trainer.state.global_step
        raise TrainingStopped(oom_message(s, last_complete_checkpoint(p.out), step + 1), exit_code=1) from None
    finally:
        if guard is not None:
            guard.uninstall()
    if guard is None:
        return result
    if guard.nonfinite is not None:
        step, loss = guard.nonfinite
        kept = last_complete_checkpoint(p.out)
        lr = s.training.learning_rate
        raise TrainingStopped(
            f"ethsft: training loss became {loss} at step {step}: stopped without saving, so no checkpoint holds the "
            f"diverged weights. Last good checkpoint: {kept or 'none (it diverged before the first save)'}. Lower "
            f"the learning rate (now {lr:g}; try --learning-rate {lr / 4:g}) and train again; check the data for "
            "empty or extreme samples if it persists.", exit_code=1)
    if guard.received is not None and guard.stopped_at is not None:
        name = signal.Signals(guard.received).name
        ckpt = getattr(trainer, "last_checkpoint", None) or last_complete_checkpoint(p.out)
        where = (f"during the evaluation after step {guard.stopped_at}" if guard.stopped_in == "evaluation"
                 else f"at step {guard.stopped_at}")
        raise TrainingStopped(f"ethsft: stopped by {name} {where}; checkpoint saved to {ckpt}; "
                              f"resume with: {resume_command()}", exit_code=128 + guard.received)
    return result


def _final_evaluate(p: Prepared, s: Settings) -> dict:
    """``trainer.evaluate()`` after training, under the stop guard: a signal stops it between batches and
    becomes TrainingStopped (the adapter is saved already; the summary is not written)."""
    from ethsft.evaluation.stopping import StopRequested

    trainer, guard = p.trainer, p.guard
    if guard is None:
        return trainer.evaluate()
    guard.during = "final evaluation"
    guard.install()
    try:
        return trainer.evaluate()
    except StopRequested:
        raise TrainingStopped(
            f"ethsft: stopped by {guard.name} during the final evaluation; training finished at step "
            f"{trainer.state.global_step} and the adapter is saved in {p.out}/, but {SUMMARY_FILE} was not written; "
            f"score the adapter with: ethsft evaluate --model {shlex.quote(str(p.out))} --dataset "
            f"{shlex.quote(s.data.dataset_dir)}", exit_code=guard.exit_code) from None
    finally:
        guard.uninstall()
        guard.during = None


def run(s: Settings, resume_from_checkpoint: str | None = None, deepspeed_config: str | None = None,
        callbacks: list | None = None) -> dict:
    """Train one QLoRA adapter as ``s`` says; returns the run summary. Raises ``guards.TrainingStopped`` when
    a signal, a non-finite loss or CUDA out of memory stops training early (the last checkpoint is kept), and
    ``hub_push.HubPushError`` when ``training.push_to_hub``'s push fails (after everything is saved)."""
    p = build_trainer(s, resume_from_checkpoint, deepspeed_config)
    try:
        return _train_save_report(p, s, callbacks)
    finally:
        if p.lock is not None:
            p.lock.release()


def _train_save_report(p: Prepared, s: Settings, callbacks: list | None) -> dict:
    from ethsft.training.reporting import peak_vram_gb, plot_losses, run_environment, write_json_atomic

    trainer, out, log_path, is_main = p.trainer, p.out, p.log_path, p.is_main
    for callback in callbacks or []:
        trainer.add_callback(callback)
    if s.training.push_to_hub:  # where it will go, and a push that cannot work (offline, no token), said now
        from ethsft.training.hub_push import preflight

        for line in preflight(s, out):
            say(line, log_path, is_main)

    # --- train -----------------------------------------------------------------------------------------
    say("\nStarting training..." if p.resume is None else f"\nResuming training from {p.resume}...", log_path, is_main)
    try:
        result = _train(p, s)
        # --- save, evaluate, report --------------------------------------------------------------------
        trainer.save_model(str(out))  # adapter (safetensors) + tokenizer; under ZeRO-3 gathered from all ranks
        final_eval = _final_evaluate(p, s) if trainer.eval_dataset is not None else {}
    except TrainingStopped as e:
        if is_main and log_path is not None:  # in training_logs.txt too; the CLI prints it on stderr
            from ethsft.training.reporting import redact_text

            with open(log_path, "a", encoding="utf-8") as fh:
                fh.write(redact_text(str(e)) + "\n")
        raise
    elapsed = time.time() - p.started
    peak = peak_vram_gb()
    trainable, total = trainer.model.get_nb_trainable_parameters()
    world = trainer.accelerator.num_processes
    runtime = result.metrics.get("train_runtime")
    summary = {
        "base_model": s.model.base_model,
        "output_dir": str(out),
        "global_step": trainer.state.global_step,
        "epochs": trainer.state.epoch,
        "train_loss": result.training_loss,
        "final_eval_loss": final_eval.get("eval_loss"),
        "samples": {k: len(v) for k, v in p.records.items()},
        "overlong_samples": {r.split: r.overlong for r in p.lengths},
        "overlong_dropped": {r.split: r.dropped for r in p.lengths},  # of those, dropped (no room for the answer)
        "trainable_parameters": trainable,
        "total_parameters": total,
        "memory_after_load_gb": p.memory_after_load_gb,
        "peak_vram_gb": peak,
        "num_processes": world,
        "effective_batch": trainer.args.per_device_train_batch_size * trainer.args.gradient_accumulation_steps * world,
        "train_tokens": trainer.state.num_input_tokens_seen,
        "train_runtime_s": runtime,
        "train_tokens_per_s": trainer.state.num_input_tokens_seen / runtime if runtime else None,
        "total_time_s": elapsed,
        "resumed_from": str(p.resume) if p.resume else None,
        "log_history": trainer.state.log_history,
        "settings": s.to_dict(),
        "environment": run_environment(),
    }
    if is_main:
        say("\nTraining complete!", log_path)
        say(f"Total time: {fmt_duration(elapsed)}", log_path)
        say(f"Peak VRAM: {peak:.1f}GB" if peak is not None else "Peak VRAM: n/a (CPU run)", log_path)
        if final_eval:
            say(f"Final validation loss: {final_eval['eval_loss']:.4f}", log_path)
        plot = plot_losses(trainer.state.log_history, out / PLOT_FILE)
        write_json_atomic(out / SUMMARY_FILE, summary)
        say(f"\nModel saved to: {out}/", log_path)
        if plot:
            say(f"Loss curves: {plot}", log_path)
    trainer.accelerator.wait_for_everyone()
    if s.training.push_to_hub and is_main:  # last: a failed push loses nothing (HubPushError says how to retry)
        from ethsft.training.hub_push import push_run

        push_run(s, out, lambda line: say(line, log_path), log_path)
    return summary
