"""What a running step can reach: its tracked run, through :func:`current_run`.

Steps stay plain functions: called outside a pipeline, :func:`current_run` returns a recorder
that keeps nothing, so ``current_run().log_metric("f1", 0.9)`` works in a unit test too.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelyard.store.data_entities import DatasetVersion
    from modelyard.tracking.run import ActiveRun
    from modelyard.workspace import Workspace

_CURRENT: ContextVar[StepContext | None] = ContextVar("modelyard_step", default=None)


class StepContext:
    """The tracked run of one step execution, opened on first use (a step that logs nothing
    never touches the metadata store). The orchestrator owns the run's lifecycle; the step only
    logs into it."""

    def __init__(self, workspace: Workspace, run_id: str | None, step: str) -> None:
        self.workspace = workspace
        self.run_id = run_id
        self.step = step
        self._run: ActiveRun | None = None

    @property
    def run(self) -> ActiveRun | None:
        if self._run is None and self.run_id is not None:
            from modelyard.tracking.run import ActiveRun
            from modelyard.tracking.settings import TrackingSettings

            row = self.workspace.store.runs.get(self.run_id)
            self._run = ActiveRun(self.workspace, row, TrackingSettings.of(self.workspace))
        return self._run

    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        if self.run is not None:
            self.run.log_metric(key, value, step)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        if self.run is not None:
            self.run.log_metrics(metrics, step)

    def set_tags(self, tags: Mapping[str, str]) -> None:
        if self.run is not None:
            self.run.set_tags(tags)

    def log_artifact(self, path: str | Path, name: str | None = None) -> str | None:
        return self.run.log_artifact(path, name) if self.run is not None else None

    def add_output(self, node_type: str, node_id: str) -> None:
        if self.run is not None:
            self.run.add_output(node_type, node_id)

    def resolve_dataset(self, ref: str) -> DatasetVersion:
        from modelyard.tracking.run import resolve_dataset_version

        return resolve_dataset_version(self.workspace, ref)

    def flush(self) -> None:
        if self._run is not None:
            self._run.flush()


class _NullContext(StepContext):
    """Outside a pipeline: accept every call, record nothing."""

    def __init__(self) -> None:
        self.run_id = None
        self.step = ""
        self._run = None

    @property
    def run(self) -> ActiveRun | None:
        return None


def current_run() -> StepContext:
    """The running step's recorder (a no-op one outside a pipeline)."""
    ctx = _CURRENT.get()
    return ctx if ctx is not None else _NullContext()


@contextlib.contextmanager
def activate(ctx: StepContext) -> Iterator[StepContext]:
    token = _CURRENT.set(ctx)
    try:
        yield ctx
    finally:
        _CURRENT.reset(token)
