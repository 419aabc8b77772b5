"""ethsft tune on the tiny model (3 trials, pruning, resume, best YAML that trains) and TensorBoard tracking."""

from __future__ import annotations

import csv

import optuna
import pytest

from conftest import tiny_settings
from ethsft.config.schema import load_settings
from ethsft.experiments.tune import _pruning_callback, apply_params, tune

FAST = ("training.max_steps=2", "logging.save_strategy=no", "logging.load_best_model_at_end=false",
        "logging.eval_steps=1")


def test_tune_three_trials_resumes_and_its_best_yaml_trains(small_dataset, tmp_path):
    from ethsft.training.recipe import run

    base = tiny_settings(small_dataset, tmp_path / "unused", *FAST)
    out = tmp_path / "study"
    first = tune(base, out, num_trials=2, seed=0)
    assert len(first.trials) == 2

    # a search killed mid-trial: the trial stays RUNNING in study.db; the next run retries it and goes on
    storage = f"sqlite:///{out / 'study.db'}"
    study = optuna.load_study(study_name="ethsft-tune", storage=storage)
    study.ask({"learning_rate": optuna.distributions.FloatDistribution(1e-5, 5e-4, log=True)})
    result = tune(base, out, num_trials=3, seed=0)

    study = optuna.load_study(study_name="ethsft-tune", storage=storage)
    states = [t.state.name for t in study.trials]
    assert states[:2] == [t["state"].upper() for t in first.trials]
    assert states[2] == "FAIL" and len(states) == 4  # the cut-off trial, then its retry
    assert sum(s in ("COMPLETE", "PRUNED") for s in states) == 3 and "COMPLETE" in states
    for t in study.trials:
        if t.state.name == "COMPLETE":
            folder = out / f"trial-{t.number:03d}"
            assert (folder / "adapter_model.safetensors").is_file() and (folder / "trial_summary.json").is_file()
            assert t.user_attrs["eval_loss"] == t.value
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert [int(r["trial"]) for r in rows] == [0, 1, 2, 3]
    assert (out / "results.md").read_text().startswith("| trial | state | learning_rate | lora_r | batch | dropout |")
    assert "Best: trial" in result.table

    # best_config.yaml: the best parameters, loadable as is, and it trains
    best = load_settings(out / "best_config.yaml")
    assert best.training.learning_rate == pytest.approx(result.best_params["learning_rate"])
    assert best.lora.r == result.best_params["lora_r"] and best.lora.alpha == 2 * best.lora.r
    assert best.training.per_device_train_batch_size == result.best_params["batch_size"]
    assert best.lora.dropout == result.best_params["lora_dropout"]
    assert best.training.output_dir == str(out / "best") and best.training.overwrite is False
    summary = run(load_settings(out / "best_config.yaml", sets=["training.max_steps=2"]))
    assert summary["global_step"] == 2 and (out / "best" / "adapter_model.safetensors").is_file()


def test_pruning_callback_reports_evaluations_and_prunes():
    class Trial:
        number = 7

        def __init__(self, prune):
            self.reported, self.prune, self.attrs = [], prune, {}

        def report(self, value, step):
            self.reported.append((step, value))

        def should_prune(self):
            return self.prune

        def set_user_attr(self, k, v):
            self.attrs[k] = v

    class State:
        global_step = 6

    keep = Trial(prune=False)
    _pruning_callback(keep, "eval_loss").on_evaluate(None, State(), None, metrics={"eval_loss": 1.5})
    assert keep.reported == [(6, 1.5)]
    cut = Trial(prune=True)
    with pytest.raises(optuna.TrialPruned, match="trial 7 pruned at step 6"):
        _pruning_callback(cut, "eval_loss").on_evaluate(None, State(), None, metrics={"eval_loss": 9.0})
    assert cut.attrs == {"pruned_at_step": 6}
    acc = Trial(prune=False)
    _pruning_callback(acc, "intent_accuracy").on_evaluate(None, State(), None,
                                                          metrics={"eval_loss": 1.0, "eval_intent_accuracy": 0.75})
    assert acc.reported == [(6, 0.75)]


def test_apply_params_keeps_the_alpha_ratio(small_dataset, tmp_path):
    base = tiny_settings(small_dataset, tmp_path / "o", "lora.r=8", "lora.alpha=32")
    s = apply_params(base, {"learning_rate": 3e-4, "lora_r": 64, "batch_size": 2, "lora_dropout": 0.1}, "x", True)
    assert (s.lora.r, s.lora.alpha, s.training.per_device_train_batch_size, s.lora.dropout) == (64, 256, 2, 0.1)
    assert base.lora.r == 8  # the base is not changed


def test_tensorboard_logs_under_output_logs(small_dataset, tmp_path):
    pytest.importorskip("tensorboard")
    from ethsft.training.recipe import run

    out = tmp_path / "tb-run"
    s = tiny_settings(small_dataset, out, "training.max_steps=2", "logging.save_strategy=no",
                      "logging.load_best_model_at_end=false")
    # wandb and mlflow are extras: when they are missing the run trains without them, with a notice
    s.logging.report_to = ["tensorboard", "wandb", "mlflow"]
    summary = run(s)
    assert summary["global_step"] == 2
    events = list((out / "logs").rglob("events.out.tfevents.*"))
    assert events, f"no TensorBoard event files under {out / 'logs'}: {sorted(p.name for p in out.iterdir())}"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    assert "train/loss" in acc.Tags()["scalars"]
    assert not list(out.glob("runs")), "events went to transformers' default <output>/runs/, not <output>/logs"
