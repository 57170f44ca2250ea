"""Test-only python models for progressive rollouts: one that answers well, and candidates
that fail 5 % of requests, add 50 ms, or crash after a number of requests."""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np


class Sign:
    """1 where the first input is positive, else 0."""

    calls = 0

    def load(self, context: Any) -> None:
        self.calls = 0

    def answer(self, inputs: Any) -> Any:
        return (np.asarray(inputs, dtype=float)[:, 0] > 0).astype(np.int64)

    def predict(self, inputs: Any) -> Any:
        self.calls += 1
        return self.answer(inputs)


class SignToo(Sign):
    """The same answers (another version that should pass every check)."""


class Flaky(Sign):
    """Fails every 20th request (5 %)."""

    def predict(self, inputs: Any) -> Any:
        self.calls += 1
        if self.calls % 20 == 0:
            raise RuntimeError("flaky candidate")
        return self.answer(inputs)


class Slow(Sign):
    """Adds 50 ms to every request."""

    def predict(self, inputs: Any) -> Any:
        time.sleep(0.05)
        return self.answer(inputs)


class Crashy(Sign):
    """Its process dies on the 25th request."""

    def predict(self, inputs: Any) -> Any:
        self.calls += 1
        if self.calls >= 25:
            os._exit(3)
        return self.answer(inputs)


def register(ws: Any, model: Any, name: str = "sign") -> str:
    from modelyard import models
    from modelyard.tracking import start_run

    with start_run(f"train-{type(model).__name__}", workspace=ws) as run:
        run.log_model(model, "model", input_example=np.zeros((2, 3)))
    ref = models.register(run.id, name, workspace=ws).ref
    models.trust_pickle(ref, workspace=ws)  # its own code runs: an admin trusts it
    return ref
