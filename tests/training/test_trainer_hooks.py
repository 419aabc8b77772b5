"""The private Trainer methods ethsft wraps still exist upstream with the parameters it passes on, and the wrapped
checkpoint save leaves only complete checkpoints: an upstream change fails here, not in a user's run."""

from __future__ import annotations

import inspect

import pytest
from transformers import Trainer

from ethsft.training.trainer import PRIVATE_HOOKS, IntentSFTTrainer


@pytest.mark.parametrize("name", sorted(PRIVATE_HOOKS))
def test_each_wrapped_private_trainer_method_exists_with_the_parameters_passed_on(name):
    upstream = getattr(Trainer, name, None)
    assert upstream is not None, f"transformers.Trainer.{name} is gone: ethsft.training.trainer wraps it"
    params = tuple(inspect.signature(upstream).parameters)
    assert params[:len(PRIVATE_HOOKS[name])] == PRIVATE_HOOKS[name], (name, params)
    assert name in vars(IntentSFTTrainer), name  # the wrapper is ethsft's own ...
    assert "super()" in inspect.getsource(vars(IntentSFTTrainer)[name])  # ... and calls transformers' method


def test_no_trainer_method_body_is_copied_from_transformers():
    ours = inspect.getsource(IntentSFTTrainer)
    for name in ("store_flos", "_save_optimizer_and_scheduler", "_save_rng_state", "_save_scaler"):
        assert f"self.{name}(" not in ours, name
