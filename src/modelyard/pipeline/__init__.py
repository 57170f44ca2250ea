"""Pipelines: plain typed functions declared as steps, wired by name into a DAG, cached, and
run in order (in parallel where the graph allows) on a local, in-process or docker runner.

Importing this package is light: pipeline files import it, and so does every worker process.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelyard.pipeline.context import StepContext, current_run
from modelyard.pipeline.step import (
    DatasetInput,
    Pipeline,
    Read,
    StepSpec,
    dataset,
    datasets,
    files,
    models,
    step,
)

if TYPE_CHECKING:
    from modelyard.pipeline.run import StepEvent, replay_pipeline, resume_pipeline, run_pipeline

__all__ = [
    "DatasetInput",
    "Pipeline",
    "Read",
    "StepContext",
    "StepEvent",
    "StepSpec",
    "current_run",
    "dataset",
    "datasets",
    "files",
    "models",
    "replay_pipeline",
    "resume_pipeline",
    "run_pipeline",
    "step",
]

_LAZY = {"run_pipeline", "resume_pipeline", "replay_pipeline", "StepEvent"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from modelyard.pipeline import run

        value = getattr(run, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'modelyard.pipeline' has no attribute {name!r}")
