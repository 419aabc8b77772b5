"""``ethsft tune``: Optuna search over the guide's hyperparameter space, one real ``ethsft.train`` run per trial.

    ethsft tune --config configs/training_config.yaml --dataset data/datasets --num-trials 20 --output runs/tune

Space (the guide's): learning rate 1e-5..5e-4 (log-uniform), LoRA rank {8, 16, 32, 64} (alpha keeps the
config's alpha/r ratio), micro batch {1, 2, 4}, LoRA dropout {0, 0.05, 0.1}. Objective: eval loss (minimised)
or intent accuracy (maximised). Each evaluation during a trial is reported to Optuna; the median pruner stops
trials worse than the median of earlier ones at the same step. Every trial trains in ``<output>/trial-NNN``.

The study lives in ``sqlite:///<output>/study.db``: run the same command again after a kill and it goes on
(a trial cut off mid-run is tried again with the same parameters). At the end: ``results.csv``,
``results.md`` and ``best_config.yaml``, which ``ethsft train --config`` accepts unchanged.
"""

from __future__ import annotations

import copy
import csv
import gc
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

from ethsft.config.schema import ConfigError, Settings, dump_yaml, notice

STUDY_NAME = "ethsft-tune"
LR_RANGE = (1e-5, 5e-4)
RANKS = [8, 16, 32, 64]
BATCHES = [1, 2, 4]
DROPOUTS = [0.0, 0.05, 0.1]
OBJECTIVES = {"eval_loss": "minimize", "intent_accuracy": "maximize"}
INTENT_ACCURACY_KEYS = ("eval_intent_accuracy", "eval_accuracy")
DEFAULT_ACCURACY_SAMPLES = 32


def _optuna():
    try:
        import optuna
    except ImportError:
        raise ConfigError("ethsft tune needs Optuna: pip install 'ethsft[tune]'") from None
    return optuna


def suggest_params(trial) -> dict:
    return {
        "learning_rate": trial.suggest_float("learning_rate", *LR_RANGE, log=True),
        "lora_r": trial.suggest_categorical("lora_r", RANKS),
        "batch_size": trial.suggest_categorical("batch_size", BATCHES),
        "lora_dropout": trial.suggest_categorical("lora_dropout", DROPOUTS),
    }


def apply_params(base: Settings, params: dict, output_dir: str | Path, overwrite: bool) -> Settings:
    """``base`` with a trial's parameters, training into ``output_dir``."""
    s = copy.deepcopy(base)
    ratio = base.lora.alpha / base.lora.r
    s.training.learning_rate = float(params["learning_rate"])
    s.lora.r = int(params["lora_r"])
    s.lora.alpha = max(1, int(round(s.lora.r * ratio)))
    s.training.per_device_train_batch_size = int(params["batch_size"])
    s.lora.dropout = float(params["lora_dropout"])
    s.training.output_dir = str(output_dir)
    s.training.overwrite = overwrite
    return s


def metric_value(metrics: dict, objective: str) -> float | None:
    if objective == "eval_loss":
        return metrics.get("eval_loss")
    for key in INTENT_ACCURACY_KEYS:
        if key in metrics:
            return metrics[key]
    for key, value in metrics.items():
        if "intent" in key and "accuracy" in key:
            return value
    return None


def _pruning_callback(trial, objective: str):
    from transformers import TrainerCallback

    optuna = _optuna()

    class OptunaPruning(TrainerCallback):
        """Reports each evaluation to the trial; raises TrialPruned when the pruner says so."""

        def on_evaluate(self, args, state, control, metrics=None, **kwargs):
            value = metric_value(metrics or {}, objective)
            if value is None or not math.isfinite(value):
                return
            trial.report(value, state.global_step)
            if trial.should_prune():
                trial.set_user_attr("pruned_at_step", state.global_step)
                raise optuna.TrialPruned(f"trial {trial.number} pruned at step {state.global_step} "
                                         f"({objective} {value:.4f})")

    return OptunaPruning()


def _free_memory() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


@dataclass
class TuneResult:
    out: Path
    best_params: dict | None
    best_value: float | None
    best_config: Path | None
    table: str
    trials: list


def make_objective(base: Settings, out: Path, objective: str):
    optuna = _optuna()

    def run_trial(trial) -> float:
        import torch

        from ethsft.training.recipe import build_trainer

        params = suggest_params(trial)
        trial_dir = out / f"trial-{trial.number:03d}"
        s = apply_params(base, params, trial_dir, overwrite=True)
        trial.set_user_attr("output_dir", str(trial_dir))
        started = time.time()
        notice(f"tune: trial {trial.number}: " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                                           for k, v in params.items()))
        prepared = None
        try:
            prepared = build_trainer(s)
            trainer = prepared.trainer
            pruning = _pruning_callback(trial, objective)
            trainer.add_callback(pruning)
            trainer.train()
            trainer.remove_callback(pruning)  # the final evaluation repeats the last step's; report it once
            metrics = trainer.evaluate() if trainer.eval_dataset is not None else {}
            value = metric_value(metrics, objective)
            if value is None:
                raise ConfigError(f"tune: the objective {objective} is not among the evaluation metrics "
                                  f"({', '.join(sorted(metrics)) or 'none: the dataset has no validation.jsonl'})")
            trainer.save_model(str(trial_dir))
            summary = {"trial": trial.number, "params": params, "objective": objective, "value": value,
                       "metrics": metrics, "global_step": trainer.state.global_step,
                       "duration_s": time.time() - started, "log_history": trainer.state.log_history}
            (trial_dir / "trial_summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n",
                                                           encoding="utf-8")
            trial.set_user_attr("eval_loss", metrics.get("eval_loss"))
            trial.set_user_attr("global_step", trainer.state.global_step)
            return float(value)
        except ValueError as e:  # the same for every trial (e.g. lora.target_modules matching no module): stop here
            from ethsft.data.records import DataError

            if isinstance(e, (ConfigError, DataError)):
                raise
            raise ConfigError(f"tune: trial {trial.number}: {str(e).strip().splitlines()[0] if str(e) else e!r}"
                              ) from None
        except torch.OutOfMemoryError:
            trial.set_user_attr("error", "CUDA out of memory")
            notice(f"tune: trial {trial.number} ran out of GPU memory: recorded as failed, the search goes on")
            raise
        finally:
            trial.set_user_attr("duration_s", round(time.time() - started, 2))
            if prepared is not None and prepared.lock is not None:
                prepared.lock.release()
            del prepared
            _free_memory()

    return run_trial


def _recover(study) -> None:
    """Trials left RUNNING by a killed search: mark them failed and queue their parameters again."""
    optuna = _optuna()
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        notice(f"tune: trial {t.number} was cut off (killed search): trying its parameters again")
        study.enqueue_trial(t.params, user_attrs={"retry_of": t.number}, skip_if_exists=False)
        study.tell(t.number, state=optuna.trial.TrialState.FAIL)


def _counts(study) -> int:
    """Trials that count toward --num-trials: finished, pruned, or failed for a reason of their own (OOM)."""
    optuna = _optuna()
    S = optuna.trial.TrialState
    return sum(1 for t in study.trials if t.state in (S.COMPLETE, S.PRUNED)
               or (t.state == S.FAIL and t.user_attrs.get("error")))


def results_table(study, objective: str) -> tuple[list[dict], str]:
    rows = []
    for t in study.trials:
        if t.state.name in ("WAITING",):
            continue
        p = t.params
        rows.append({"trial": t.number, "state": t.state.name.lower(),
                     "learning_rate": p.get("learning_rate"), "lora_r": p.get("lora_r"),
                     "batch_size": p.get("batch_size"), "lora_dropout": p.get("lora_dropout"),
                     objective: t.value, "eval_loss": t.user_attrs.get("eval_loss"),
                     "steps": t.user_attrs.get("global_step") or t.user_attrs.get("pruned_at_step"),
                     "duration_s": t.user_attrs.get("duration_s"), "output_dir": t.user_attrs.get("output_dir"),
                     "note": t.user_attrs.get("error") or ("" if t.state.name != "FAIL" else "cut off, retried")})

    def f(v, fmt):
        return "" if v is None else format(v, fmt)

    head = f"| trial | state | learning_rate | lora_r | batch | dropout | {objective} | steps | time | note |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r['trial']} | {r['state']} | {f(r['learning_rate'], '.2e')} | {f(r['lora_r'], 'd')} | "
                     f"{f(r['batch_size'], 'd')} | {f(r['lora_dropout'], 'g')} | {f(r[objective], '.4f')} | "
                     f"{f(r['steps'], 'd')} | {f(r['duration_s'], '.0f')}s | {r['note'] or ''} |")
    return rows, "\n".join(lines)


def tune(base: Settings, out: str | Path, num_trials: int = 20, objective: str = "eval_loss", seed: int = 42,
         timeout: float | None = None) -> TuneResult:
    """Run (or continue) the search in ``out`` until ``num_trials`` trials have finished."""
    optuna = _optuna()
    import torch

    if objective not in OBJECTIVES:
        raise ConfigError(f"tune: objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    if base.logging.eval_strategy == "no":
        raise ConfigError("tune: logging.eval_strategy is 'no'; trials need evaluation (set it to steps or epoch)")
    if objective == "intent_accuracy" and base.logging.eval_accuracy_samples <= 0:
        base = copy.deepcopy(base)
        base.logging.eval_accuracy_samples = DEFAULT_ACCURACY_SAMPLES
        notice(f"tune: objective intent_accuracy: logging.eval_accuracy_samples set to {DEFAULT_ACCURACY_SAMPLES}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # ethsft says what matters (OOM, a failed trial) itself
    storage = f"sqlite:///{(out / 'study.db').resolve()}"
    direction = OBJECTIVES[objective]
    study = optuna.create_study(study_name=STUDY_NAME, storage=storage, load_if_exists=True, direction=direction,
                                pruner=optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0))
    if study.direction.name.lower() != direction:
        raise ConfigError(f"tune: {out}/study.db holds a search that {study.direction.name.lower()}s; this one would "
                          f"{direction} {objective}: use another --output")
    study.set_user_attr("objective", objective)
    _recover(study)
    # A fresh seed per session: a resumed search does not replay the random start of the first one.
    study.sampler = optuna.samplers.TPESampler(seed=seed + len(study.trials), n_startup_trials=min(10, num_trials))
    done = _counts(study)
    if done:
        notice(f"tune: {out}/study.db holds {done} finished trial(s); running {max(0, num_trials - done)} more")
    run_trial = make_objective(base, out, objective)
    while _counts(study) < num_trials:
        before = len(study.trials)
        study.optimize(run_trial, n_trials=1, timeout=timeout, catch=(torch.OutOfMemoryError,),
                       gc_after_trial=True)
        if len(study.trials) == before:  # timeout before a trial started
            break
    rows, table = results_table(study, objective)
    _write_csv(out / "results.csv", rows)
    best_params = best_value = best_config = None
    completed = [t for t in study.trials if t.state.name == "COMPLETE"]
    if completed:
        best = study.best_trial
        best_params, best_value = best.params, best.value
        best_settings = apply_params(base, best.params, out / "best", overwrite=False)
        best_config = out / "best_config.yaml"
        header = (f"# ethsft tune: best of {len(completed)} completed trial(s) in {storage}\n"
                  f"# trial {best.number}: {objective} = {best.value:.4f}\n"
                  f"#   ethsft train --config {best_config}\n")
        best_config.write_text(header + dump_yaml(best_settings), encoding="utf-8")
        table += f"\n\nBest: trial {best.number} ({objective} {best.value:.4f}): " + ", ".join(
            f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best.params.items())
        table += f"\nBest config: {best_config}"
    (out / "results.md").write_text(table + "\n", encoding="utf-8")
    return TuneResult(out, best_params, best_value, best_config, table, rows)


def _write_csv(path: Path, rows: list[dict]) -> None:
    if not rows:
        path.write_text("", encoding="utf-8")
        return
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
