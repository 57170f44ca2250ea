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
