"""The one trainer ethsft runs: TRL's ``SFTTrainer`` with what a long QLoRA run needs.

* **Complete checkpoints only**: the Trainer writes ``checkpoint-N`` in place (model, optimizer, scheduler, RNG,
  then ``trainer_state.json``), so a kill -9 mid-save leaves a folder that looks like a checkpoint. Here
  ``Trainer._save_checkpoint`` runs unchanged (``super()``) with ``_get_output_dir`` pointing at a staging folder
  (``.tmp-checkpoint/checkpoint-N``), which is renamed to ``checkpoint-N`` once every process has finished
  (DeepSpeed writes shards from every rank); rotation (``save_total_limit``) and ``best_model_checkpoint`` only
  ever see complete folders.

Private ``Trainer`` methods wrapped here (each calls ``super()``; ``PRIVATE_HOOKS`` lists them and a test checks
their signatures against the installed transformers, so an upstream change fails loudly): ``_save_checkpoint``,
``_get_output_dir``, ``_load_from_checkpoint``, ``_maybe_log_save_evaluate``, ``_prepare_inputs``,
``_track_num_input_tokens``.
* **Resume in the adapter's own dtype**, and **non-finite losses** caught per micro-batch (``guards.StopGuard``
  stops on them).
* **Intent accuracy at each evaluation** (``track_intent_accuracy``): generated on a fixed validation subset and
  logged beside ``eval_loss``. Why ``evaluation_loop`` and not a callback (``Trainer.evaluate``)::

      output = self.evaluation_loop(...)        # <- the intent metrics join output.metrics here
      self.log(output.metrics)                  #    console, training_logs.txt, trackers, log_history
      self.callback_handler.on_evaluate(..., output.metrics)
      return output.metrics                     # -> _determine_best_metric(metrics)

  A callback's ``on_evaluate`` runs after ``self.log``: its metrics never reach the log line or trackers.
* **Evaluation stops on SIGTERM/SIGINT** between batches (eval loss and intent generation): the step being
  evaluated is saved as a checkpoint and training stops as after a step (``guards.StopGuard``).
* **CUDA-graphed training steps** (``use_cuda_graphs``, the fast path's ``optimization.cuda_graphs``): the loss
  of each packed row is replayed by ``fastpath.graphs.GraphedLoss``, and the host stops waiting for the GPU
  between micro-batches.
"""

from __future__ import annotations

import os
import shutil

import torch
from trl import SFTTrainer

from ethsft.evaluation.stopping import StopRequested
from ethsft.training.guards import TMP_PREFIX, StopGuard, publish

STAGING_DIR = TMP_PREFIX + "checkpoint"  # checkpoint-N is written here, then renamed into the run's folder


# private Trainer method -> the parameters ethsft's override passes on to it
PRIVATE_HOOKS = {
    "_save_checkpoint": ("self", "model", "trial"),
    "_get_output_dir": ("self", "trial"),
    "_load_from_checkpoint": ("self", "resume_from_checkpoint", "model"),
    "_maybe_log_save_evaluate": ("self", "tr_loss", "grad_norm", "model", "trial"),
    "_prepare_inputs": ("self", "inputs"),
    "_track_num_input_tokens": ("self", "inputs"),
}


class IntentSFTTrainer(SFTTrainer):
    nonfinite: tuple[int, float] | None = None  # (step, loss) of the first non-finite training loss
    last_checkpoint: str | None = None
    intent_evaluator = None  # an evaluation.callback.IntentEvaluator, set by track_intent_accuracy
    graphed = None  # a fastpath.graphs.GraphedLoss, set by use_cuda_graphs
    _step_losses: list | None = None
    _staging: str | None = None  # set while _save_checkpoint writes into the staging folder

    # --- intent accuracy ----------------------------------------------------------------------------------

    def track_intent_accuracy(self, records, samples: int, system_prompt: str | None = None, seed: int = 0):
        """Generate on ``samples`` of the validation ``records`` at each evaluation (no-op when 0 or no records)."""
        from ethsft.evaluation.callback import IntentEvaluator

        if samples and records:
            self.intent_evaluator = IntentEvaluator(records, self.processing_class, samples, system_prompt,
                                                    max(8, self.args.per_device_eval_batch_size), seed=seed)
        return self.intent_evaluator

    def evaluation_loop(self, dataloader, description, prediction_loss_only=None, ignore_keys=None,
                        metric_key_prefix="eval"):
        guard = self.stop_guard
        during = guard.during if guard is not None else None
        if guard is not None and during is None:
            guard.during = "evaluation"
        try:
            output = super().evaluation_loop(dataloader, description, prediction_loss_only, ignore_keys,
                                             metric_key_prefix)
            if self.intent_evaluator is not None and description == "Evaluation":  # not predict()
                model = self.accelerator.unwrap_model(self.model)
                with self.accelerator.autocast():  # the same mixed precision as the eval forward passes
                    scores = self.intent_evaluator(model, self.accelerator, stop=guard)
                output.metrics.update({f"{metric_key_prefix}_{k}": v for k, v in scores.items()})
        except StopRequested:
            for callback in self.callback_handler.callbacks:  # on_evaluate, which closes the bar, will not come
                bar = getattr(callback, "prediction_bar", None)  # transformers' ProgressCallback
                if bar is not None:
                    bar.close()
                    callback.prediction_bar = None
            raise
        finally:
            if guard is not None:
                guard.during = during
        return output

    # --- stopping an evaluation on SIGTERM/SIGINT ---------------------------------------------------------

    @property
    def stop_guard(self) -> StopGuard | None:
        """The run's ``guards.StopGuard`` callback, if it has one."""
        return next((c for c in self.callback_handler.callbacks if isinstance(c, StopGuard)), None)

    def prediction_step(self, model, inputs, prediction_loss_only, ignore_keys=None):
        guard = self.stop_guard  # every process asks once per evaluation batch (agreed() may all-reduce)
        if guard is not None and guard.agreed():
            raise StopRequested()
        return super().prediction_step(model, inputs, prediction_loss_only, ignore_keys=ignore_keys)

    def _maybe_log_save_evaluate(self, tr_loss, grad_norm, model, trial, *args, **kwargs):
        """transformers' log -> evaluate -> save; a signal that stops the evaluation (``StopRequested``) saves the
        step being evaluated instead (evaluation changes neither weights nor optimizer) and stops training."""
        try:
            return super()._maybe_log_save_evaluate(tr_loss, grad_norm, model, trial, *args, **kwargs)
        except StopRequested:
            guard = self.stop_guard
            guard.stopped_at, guard.stopped_in = self.state.global_step, "evaluation"
            self._save_checkpoint(model, trial)  # even with save_strategy "no": a stop must be resumable
            self.control = self.callback_handler.on_save(self.args, self.state, self.control)
            self.control.should_training_stop = True

    # --- CUDA-graphed steps -------------------------------------------------------------------------------

    def use_cuda_graphs(self, rows: int):
        """Route the training loss through ``GraphedLoss`` (evaluation, and rows that do not fit, stay on TRL's
        ``compute_loss``); returns the runner, whose ``replays``/``eager`` count what ran. Batches then go to the GPU
        asynchronously (from pinned memory), tokens seen are counted on the host (one process), and the NaN/inf
        filter of the logged loss (a read of every micro-batch's loss) is off: ``guards.StopGuard`` stops on a
        non-finite loss itself."""
        from ethsft.fastpath.graphs import GraphedLoss, row_shape

        self.graphed = GraphedLoss(self, row_shape(rows, self.train_dataset))
        self.args.logging_nan_inf_filter = False
        return self.graphed

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.graphed is not None and model.training and not return_outputs and torch.is_grad_enabled():
            loss = self.graphed(inputs, num_items_in_batch)
            if loss is not None:
                return loss
        return super().compute_loss(model, inputs, return_outputs=return_outputs,
                                    num_items_in_batch=num_items_in_batch)

    def _prepare_inputs(self, inputs):
        if self.graphed is not None and isinstance(inputs, dict):
            inputs = {k: v.to(self.args.device, non_blocking=True) if isinstance(v, torch.Tensor) else v
                      for k, v in inputs.items()}
        return super()._prepare_inputs(inputs)

    def _track_num_input_tokens(self, inputs):
        """transformers' own sends the count to the GPU and reads it back, a wait per micro-batch: graphed runs
        count on the host."""
        ids = inputs.get("input_ids") if isinstance(inputs, dict) else None
        if (self.graphed is None or self.args.world_size > 1 or ids is None or ids.is_cuda
                or "attention_mask" in inputs):
            return super()._track_num_input_tokens(inputs)
        pad = getattr(self.processing_class, "pad_token_id", None)
        mode = self.args.include_num_input_tokens_seen
        if mode in ("all", True) or (mode == "non_padding" and pad is None):
            self.state.num_input_tokens_seen += ids.numel()
        elif mode == "non_padding":
            self.state.num_input_tokens_seen += int((ids != pad).sum())

    # --- non-finite losses, resume, complete checkpoints ----------------------------------------------------


    def training_step(self, *args, **kwargs):
        loss = super().training_step(*args, **kwargs)
        # transformers' logging_nan_inf_filter hides a NaN step in the logged average: look at each micro-batch
        # here, on the device (reading it now would wait for the GPU every micro-batch); ``check_nonfinite``
        # reads them once a step
        if self.nonfinite is None:
            if self._step_losses is None:
                self._step_losses = []
            self._step_losses.append(loss.detach().float().reshape(-1).clone())
        return loss

    def check_nonfinite(self) -> tuple[int, float] | None:
        """The first non-finite micro-batch loss of the step that just ended, as (step, loss); None if all were
        finite. Sets ``nonfinite``."""
        if self.nonfinite is None and self._step_losses:
            losses = torch.cat(self._step_losses)
            self._step_losses = None
            bad = (~torch.isfinite(losses)).nonzero()
            if len(bad):
                self.nonfinite = (self.state.global_step, float(losses[bad[0, 0]]))
        return self.nonfinite

    def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
        """Resume with the adapter in the dtype it trained in. TRL keeps QLoRA adapters in bf16, but PEFT's
        ``load_adapter`` (autocast_adapter_dtype) reloads them in fp32: without this the resumed run trains at
        another precision and its losses drift from the uninterrupted run's. The optimizer is created after this
        (non-DeepSpeed path), so it sees the restored parameters."""
        target = model if model is not None else self.model
        dtypes = {n: p.dtype for n, p in target.named_parameters() if p.requires_grad}
        super()._load_from_checkpoint(resume_from_checkpoint, model)
        for name, param in target.named_parameters():
            if name in dtypes and param.dtype != dtypes[name]:
                param.data = param.data.to(dtypes[name])

    def _save_checkpoint(self, model, trial):
        """transformers' own ``_save_checkpoint`` (called, not copied), pointed at a staging folder
        (``_get_output_dir`` below) and published as ``checkpoint-N`` once every process has written into it."""
        from transformers.trainer import TRAINER_STATE_NAME
        from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints

        run_dir = self._get_output_dir(trial=trial)
        staging = os.path.join(run_dir, STAGING_DIR)
        if self.args.should_save and os.path.exists(staging):
            shutil.rmtree(staging)  # left by a process killed while saving
        self.accelerator.wait_for_everyone()
        self._staging = staging
        try:
            super()._save_checkpoint(model, trial)  # saves into staging/checkpoint-N
        finally:
            self._staging = None
        folder = f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        written, final = os.path.join(staging, folder), os.path.join(run_dir, folder)
        best = self.state.best_model_checkpoint
        if best and os.path.dirname(best) == staging:  # the best is this checkpoint: name it as it will be found
            self.state.best_model_checkpoint = os.path.join(run_dir, os.path.basename(best))
            if self.args.should_save:
                self.state.save_to_json(os.path.join(written, TRAINER_STATE_NAME))
        self.accelerator.wait_for_everyone()  # every rank (DeepSpeed shards) has written into staging
        if self.args.should_save:
            publish(written, final)
            shutil.rmtree(staging, ignore_errors=True)
        self.accelerator.wait_for_everyone()
        self.last_checkpoint = final
        if self.args.should_save:  # rotation, as transformers does it, among complete checkpoints only
            rotate_checkpoints(output_dir=run_dir, save_total_limit=self.args.save_total_limit,
                               best_model_checkpoint=self.state.best_model_checkpoint, use_mtime=True)

    def _get_output_dir(self, trial):
        """The run's folder, or while a checkpoint is being saved the staging folder inside it."""
        return self._staging or super()._get_output_dir(trial=trial)
