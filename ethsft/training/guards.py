"""Training-time safety around the trainer: publishing complete checkpoints, stop-on-signal, stop-on-NaN, the
overfitting warning, and the next setting to try after CUDA out of memory. The trainer that writes the
checkpoints is :class:`ethsft.training.trainer.IntentSFTTrainer`."""

from __future__ import annotations

import math
import os
import shutil
import signal
from pathlib import Path

import torch
from transformers import TrainerCallback

from ethsft.evaluation.stopping import SignalStop

TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".old-"


class TrainingStopped(RuntimeError):
    """Training stopped early on purpose (signal, NaN loss, out of memory); ``exit_code`` for the CLI."""

    def __init__(self, message: str, exit_code: int = 1):
        super().__init__(message)
        self.exit_code = exit_code


def publish(tmp: str, final: str) -> None:
    """Rename a fully written ``tmp`` folder to ``final`` (replacing an older folder of that name)."""
    _fsync_tree(tmp)
    if os.path.exists(final):  # e.g. from an earlier run into this folder with --overwrite
        trash = os.path.join(os.path.dirname(final), TRASH_PREFIX + os.path.basename(final))
        shutil.rmtree(trash, ignore_errors=True)
        os.replace(final, trash)
        os.replace(tmp, final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(tmp, final)
    _fsync(os.path.dirname(final))


def _fsync_tree(root: str) -> None:
    for dirpath, _, files in os.walk(root):
        for name in files:
            _fsync(os.path.join(dirpath, name))


def _fsync(path: str) -> None:
    """Flush a file or folder entry to disk; best effort (some filesystems refuse fsync on folders)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------------------------------------------
# SIGTERM / SIGINT and NaN: stop at the end of the current step


class StopGuard(SignalStop, TrainerCallback):
    """First SIGTERM/SIGINT: finish the step, save a checkpoint, stop. Second: exit at once.
    During an evaluation the first signal stops the evaluation between batches (``StopRequested``, from
    ``agreed``); the trainer then saves the step that was being evaluated and stops the same way.
    A non-finite training loss: stop without saving, so the last good checkpoint stays the newest.

    Under several processes the decision is shared (one small all-reduce per optimizer step, and per evaluation
    batch), so that every rank saves and stops at the same step even if only one of them got the signal.
    """

    def __init__(self, trainer=None, exit_fn=os._exit, stream=None):
        super().__init__(exit_fn=exit_fn, stream=stream)
        self.trainer = trainer
        self.during: str | None = None  # "evaluation" / "final evaluation" while one runs (for the notice)
        self.stopped_at: int | None = None  # step at which training stopped for the signal
        self.stopped_in: str | None = None  # "evaluation" when the signal stopped an evaluation
        self.nonfinite: tuple[int, float] | None = None

    def notice(self, name: str) -> str:
        if self.during == "evaluation":
            return (f"ethsft: {name} received during evaluation: stopping it, then saving a checkpoint of the last "
                    f"completed step and stopping (send {name} again to exit at once)")
        if self.during == "final evaluation":
            return (f"ethsft: {name} received during the final evaluation: stopping it; the trained adapter is "
                    f"already saved (send {name} again to exit at once)")
        return (f"ethsft: {name} received: finishing the current step, then saving a checkpoint and stopping "
                f"(send {name} again to exit at once)")

    def second_notice(self, name: str) -> str:
        return f"ethsft: second {name}: exiting now, without a checkpoint"

    def agreed(self) -> bool:
        """Did any process get a signal? Collective under several processes: every rank asks at the same point
        (each evaluation batch, each generation batch)."""
        args = getattr(self.trainer, "args", None)
        flag = bool(_any_rank([1.0 if self.received is not None else 0.0], args)[0])
        if flag and self.received is None:
            self.received = signal.SIGTERM  # another rank got it
        return flag

    def on_step_end(self, args, state, control, **kwargs):
        check = getattr(self.trainer, "check_nonfinite", None)
        nonfinite = check() if check else getattr(self.trainer, "nonfinite", None)
        flags = _any_rank([1.0 if self.received is not None else 0.0, 1.0 if nonfinite is not None else 0.0], args)
        if flags[1]:
            self.nonfinite = nonfinite or (state.global_step, float("nan"))
            control.should_save = False  # keep the last good checkpoint the newest one
            control.should_evaluate = False
            control.should_training_stop = True
        elif flags[0]:
            if self.received is None:
                self.received = signal.SIGTERM  # another rank got it
            self.stopped_at = state.global_step
            control.should_save = True  # even with save_strategy "no": a stop must be resumable
            control.should_evaluate = False  # stopping now: this step's evaluation would only delay the exit
            control.should_training_stop = True
        return control

    def on_epoch_end(self, args, state, control, **kwargs):
        # the epoch ends early after a stop: no evaluation, and no save beyond the one the stop made (or, after a
        # non-finite loss, none at all) even with eval/save_strategy "epoch"
        if self.stopped_at is not None or self.nonfinite is not None:
            control.should_evaluate = False
            control.should_save = False
        return control


def _any_rank(flags: list[float], args) -> list[float]:
    """``flags``, each the maximum over every process (one all-reduce) when several run; as given otherwise."""
    if args is None or args.world_size <= 1 or not torch.distributed.is_available() \
            or not torch.distributed.is_initialized():
        return flags
    t = torch.tensor(flags, device=args.device)
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return t.tolist()


# --------------------------------------------------------------------------------------------------------------
# overfitting warning


class OverfitWarning(TrainerCallback):
    """Warn once when eval loss has risen for ``patience`` evaluations in a row while train loss fell."""

    def __init__(self, say, patience: int = 3, early_stopping: bool = False):
        self.say = say
        self.patience = patience
        self.early_stopping = early_stopping
        self.points: list[tuple[int, float, float | None]] = []  # (step, eval loss, latest train loss)
        self.train_loss: float | None = None
        self.warned = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs:
            return
        if "loss" in logs and isinstance(logs["loss"], (int, float)) and math.isfinite(logs["loss"]):
            self.train_loss = float(logs["loss"])
        if "eval_loss" in logs and state.is_world_process_zero:
            self.points.append((state.global_step, float(logs["eval_loss"]), self.train_loss))
            self.check()

    def check(self) -> str | None:
        n = self.patience
        if self.warned or len(self.points) < n + 1:
            return None
        window = self.points[-(n + 1):]
        evals = [p[1] for p in window]
        trains = [p[2] for p in window]
        rising = all(b > a for a, b in zip(evals, evals[1:]))
        falling = None not in trains and trains[-1] < trains[0]
        if not (rising and falling):
            return None
        self.warned = True
        hint = ("early stopping (training.early_stopping_patience) is on and will stop the run"
                if self.early_stopping else
                "set training.early_stopping_patience (e.g. 3) to stop at the best evaluation")
        message = (f"Warning: validation loss has risen for {n} evaluations in a row ({evals[0]:.4f} -> "
                   f"{evals[-1]:.4f}, steps {window[0][0]}-{window[-1][0]}) while training loss fell "
                   f"({trains[0]:.4f} -> {trains[-1]:.4f}): the model is overfitting. {hint.capitalize()}, or train "
                   "fewer epochs (training.num_train_epochs); load_best_model_at_end keeps the best checkpoint.")
        self.say(message)
        return message


# --------------------------------------------------------------------------------------------------------------
# CUDA out of memory: the guide's order


def oom_advice(s) -> list[str]:
    """The next concrete settings to try after CUDA OOM: the mildest step of each rung of the ladder ``ethsft
    estimate`` also walks (``oom_ladder``: sequence length, smaller micro batch with the same effective batch, LoRA
    rank, gradient checkpointing), as ``ethsft train`` arguments. Settings at their floor are skipped."""
    from ethsft.training.oom_ladder import format_sets, ladder

    return [f"{format_sets(rung.options[0], train_flags=True)} ({rung.now})" for rung in ladder(s)]


def oom_message(s, checkpoint: str | None, step: int | None) -> str:
    steps = oom_advice(s)
    lines = [f"ethsft: CUDA out of memory{f' at step {step}' if step is not None else ''}."]
    if steps:
        lines.append(f"Try next: {steps[0]}")
        lines += [f"  then: {x}" for x in steps[1:]]
    else:
        from ethsft.training.oom_ladder import FLOORS

        lines.append(f"Every setting the guide lists is already at its floor ({FLOORS}): use a GPU with more memory.")
    if checkpoint:
        lines.append(f"The last checkpoint is kept: {checkpoint}")
    return "\n".join(lines)


def last_complete_checkpoint(out: Path) -> str | None:
    from ethsft.training.outputs import complete_checkpoints

    found = complete_checkpoints(Path(out))
    return str(found[-1]) if found else None
