"""Small models shared by the flavor and serving tests (built inline, fitted in milliseconds)."""

from __future__ import annotations

from typing import Any

import numpy as np


class AddOne:
    """A generic python model: predicts x + offset, offset read from an artifact."""

    def __init__(self) -> None:
        self.offset = 1.0
        self.artifacts: dict[str, Any] = {}

    def load(self, context: Any) -> None:
        path = context.artifacts.get("offset")
        if path is not None:
            self.offset = float(path.read_text())

    def predict(self, inputs: Any) -> Any:
        return np.asarray(inputs, dtype=float)[:, 0] + self.offset


def frame_and_labels(n: int = 60) -> tuple[Any, Any]:
    import pandas as pd

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(n, 3)), columns=["a", "b", "c"])
    frame["city"] = rng.choice(["x", "y"], size=n)
    labels = (frame["a"] + (frame["city"] == "x") > 0.5).astype(int)
    return frame, labels


def churn_pipeline() -> tuple[Any, Any]:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame, labels = frame_and_labels()
    pre = ColumnTransformer(
        [("num", StandardScaler(), ["a", "b", "c"]), ("cat", OneHotEncoder(), ["city"])]
    )
    return make_pipeline(pre, LogisticRegression()).fit(frame, labels), frame


def expected_actor(ws: Any) -> str:
    """Who a registry change is recorded as: user@host locally; against a team server, the
    authenticated token's name (the server fills it in, whatever the client sends)."""
    if ws.settings.server_url is not None:
        return "test-admin"  # the admin token conftest_remote.start_server creates
    from modelyard.models._common import actor

    return actor()


class Mixed:
    """A python model with a tensor input of each kind (FP32, INT8, BYTES, BOOL) and an output
    of each kind, for the V2 protocol tests: score = sum of x and k, label = tag (+ "!" when
    on), flag = not on, count = sum of k."""

    def load(self, context: Any) -> None:
        pass

    def predict(self, inputs: Any) -> Any:
        x = np.asarray(inputs["x"], dtype=np.float32)
        k = np.asarray(inputs["k"]).astype(np.int64)
        on = np.asarray(inputs["on"], dtype=bool)[:, 0]
        tags = np.asarray(inputs["tag"], dtype=object)[:, 0]
        label = np.empty(len(tags), dtype=object)
        label[:] = [str(t) + ("!" if o else "") for t, o in zip(tags, on, strict=True)]
        return {
            "score": (x.sum(axis=1) + k.sum(axis=1)).astype(np.float32),
            "label": label,
            "flag": ~on,
            "count": k.sum(axis=1),
        }


def mixed_inputs(rows: int = 2, seed: int = 0) -> dict[str, Any]:
    """Inputs of :class:`Mixed`: x float32 [rows, 3], k int8 [rows, 2], tag str [rows, 1] (not
    all ASCII), on bool [rows, 1]."""
    rng = np.random.default_rng(seed)
    tag = np.empty((rows, 1), dtype=object)
    tag[:, 0] = [f"t{i}-é" for i in range(rows)]
    return {
        "x": rng.normal(size=(rows, 3)).astype(np.float32),
        "k": rng.integers(-100, 100, size=(rows, 2)).astype(np.int8),
        "tag": tag,
        "on": (np.arange(rows) % 2 == 0).reshape(rows, 1),
    }


class Slow:
    """A python model whose predict takes 20 ms (so the server runs it in a thread and
    requests arriving meanwhile are batched): predicts the row sums."""

    def load(self, context: Any) -> None:
        pass

    def predict(self, inputs: Any) -> Any:
        import time

        time.sleep(0.02)  # the model's own cost, not a synchronisation
        return np.asarray(inputs, dtype=np.float64).sum(axis=1)


def saved_churn(folder: Any) -> Any:
    """The churn pipeline saved as a model folder ``folder / "churn"`` (returned)."""
    from modelyard.flavors import save_model

    model, frame = churn_pipeline()
    path = folder / "churn"
    save_model(model, path, input_example=frame[:5])
    return path
