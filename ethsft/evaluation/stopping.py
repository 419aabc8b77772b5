"""Stopping evaluation and generation on SIGTERM/SIGINT, within a generate step instead of after a whole pass.

A first signal only sets a flag (:class:`SignalStop`); the loops that can run for minutes look at it:
``generation.generate_ids`` between batches (and ``generate`` itself at its next token, through
:meth:`SignalStop.criteria`), the trainer between evaluation batches. They raise :class:`StopRequested`, which the
caller turns into its own exit: ``ethsft train`` saves the last completed step and prints the resume command,
``ethsft evaluate``/``infer`` write nothing and exit 143/130. A second signal exits at once.

The trainer's ``training.guards.StopGuard`` is a :class:`SignalStop` whose :meth:`~SignalStop.agreed` is shared by
every process of a distributed run.
"""

from __future__ import annotations

import os
import signal
import sys

import torch
from transformers import StoppingCriteria, StoppingCriteriaList


class StopRequested(Exception):
    """A first SIGTERM/SIGINT stopped evaluation or generation; what it had produced so far is incomplete.
    ``done``/``total``: prompts fully generated out of those asked for (None outside generation)."""

    def __init__(self, done: int | None = None, total: int | None = None):
        self.done, self.total = done, total
        super().__init__("stopped by a signal" + (f" after {done} of {total}" if total is not None else ""))


class SignalStop:
    """SIGTERM/SIGINT handlers: the first signal sets ``received`` and says so in one line; a second one exits
    at once with 128 + its number. ``with stop:`` installs them around the work that checks it (nesting is
    fine: the outermost ``with`` restores the handlers that were there before)."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self, exit_fn=os._exit, stream=None):
        self.exit_fn = exit_fn
        self.stream = stream
        self.received: int | None = None  # signal number
        self._previous: dict = {}
        self._depth = 0  # install() calls not yet undone: nested ones keep the outermost previous handlers

    # --- handlers -------------------------------------------------------------------------------------------

    def install(self):
        import threading

        self._depth += 1
        if self._depth == 1 and threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self.handle)
        return self

    def uninstall(self) -> None:
        self._depth = max(0, self._depth - 1)
        if self._depth:
            return
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __enter__(self):
        return self.install()

    def __exit__(self, *exc) -> None:
        self.uninstall()

    def _say(self, line: str) -> None:
        print(line, file=self.stream or sys.stderr, flush=True)

    def notice(self, name: str) -> str:
        """The line said on the first signal."""
        return f"ethsft: {name} received: stopping generation (send {name} again to exit at once)"

    def second_notice(self, name: str) -> str:
        """The line said on the second signal, just before exiting."""
        return f"ethsft: second {name}: exiting now"

    def handle(self, signum, frame=None) -> None:
        name = signal.Signals(signum).name
        if self.received is not None:
            self._say(self.second_notice(name))
            self.exit_fn(128 + signum)
            return
        self.received = signum
        self._say(self.notice(name))

    # --- what the loops ask ---------------------------------------------------------------------------------

    @property
    def name(self) -> str | None:
        return signal.Signals(self.received).name if self.received is not None else None

    @property
    def exit_code(self) -> int:
        return 128 + (self.received or signal.SIGTERM)

    def requested(self) -> bool:
        """Did this process get a signal? Cheap: safe to ask at every generated token."""
        return self.received is not None

    def agreed(self) -> bool:
        """Did any process get one? Every process must ask at the same point (subclasses may communicate)."""
        return self.requested()

    def criteria(self) -> StoppingCriteriaList:
        """For ``generate(stopping_criteria=...)``: end every sequence at the next token once a signal came."""
        return StoppingCriteriaList([_OnSignal(self)])


class _OnSignal(StoppingCriteria):
    def __init__(self, stop: SignalStop):
        self.stop = stop

    def __call__(self, input_ids, scores, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.stop.requested(), dtype=torch.bool, device=input_ids.device)
