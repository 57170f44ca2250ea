"""A two-step pipeline for the monitor tests: ``flip`` trains on inverted labels (a model that
loses), ``fail`` makes training raise, ``hold`` writes a marker file and waits before training
(so a test can signal a monitor mid-retrain)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from modelyard.pipeline import Pipeline, current_run, step


def toy_frame(n: int = 300, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(rng.normal(size=(n, 2)), columns=["a", "b"])
    frame["y"] = (frame["a"] > 0).astype(int)
    return frame


@step(cache=False, outputs="frame")
def load(flip: bool = False, seed: int = 0) -> pd.DataFrame:
    frame = toy_frame(seed=seed)
    if flip:
        frame["y"] = 1 - frame["y"]
    return frame


@step(cache=False, outputs="logged")
def train(frame: pd.DataFrame, fail: bool = False, hold: str = "") -> str:
    from sklearn.linear_model import LogisticRegression

    from modelyard.models import log_model

    if hold:  # say "training", then wait for the test's go-ahead (at most 30 s)
        Path(hold).write_text("training")
        deadline = time.monotonic() + 30
        while not Path(hold).with_suffix(".go").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
    if fail:
        raise RuntimeError("training blew up")
    model = LogisticRegression().fit(frame[["a", "b"]], frame["y"])
    run: Any = current_run().run
    return log_model(run, model, "model", input_example=frame[["a", "b"]].head(3)).digest


pipeline = Pipeline("toy", [load, train])


def deploy_champion(ws: Any, *, flip: bool, port: int | None = None) -> Path:
    """Train v1 with this pipeline (in-process), register and promote it, and record it as
    deployed as ``toy-prod`` (rows only: no process is started)."""
    import shutil

    from modelyard import models
    from modelyard.pipeline.run import make_runner, run_pipeline

    path = ws.root / "toy.py"
    shutil.copy(Path(__file__), path)
    run = run_pipeline(
        path, params={"flip": flip}, workspace=ws, runner=make_runner("in-process", ws)
    )
    assert run.status == "finished", run.error
    version = models.register(run.step("train").run_id or "", "toy", workspace=ws)
    models.promote(version.ref, "production", workspace=ws)
    ws.store.deployments.create("toy-prod", "local", port=port, replicas=1, config={})
    revision = ws.store.deployments.add_revision(
        "toy-prod", model_name="toy", model_version=1, image_ref=None, image_digest=None, replicas=1
    )
    ws.store.deployments.finish_revision("toy-prod", revision.revision, ok=True)
    return path
