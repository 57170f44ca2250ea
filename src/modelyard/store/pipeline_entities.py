"""Values of the pipeline stage that leave the store: frozen dataclasses, never rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelyard.errors import NotFound

STEP_PENDING = "pending"


STEP_RUNNING = "running"


STEP_FINISHED = "finished"


STEP_CACHED = "cached"


STEP_REUSED = "reused"  # taken over from the run being resumed


STEP_FAILED = "failed"


STEP_SKIPPED = "skipped"  # an upstream step failed


STEP_DONE = frozenset({STEP_FINISHED, STEP_CACHED, STEP_REUSED})


@dataclass(frozen=True)
class PipelineStep:
    step: str
    position: int
    status: str
    run_id: str | None
    cache_key: str | None
    attempts: int
    outputs: dict[str, dict[str, str]] | None
    error: str | None
    started_at: datetime | None
    ended_at: datetime | None

    @property
    def duration_s(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        return (self.ended_at - self.started_at).total_seconds()


@dataclass(frozen=True)
class PipelineRun:
    id: str
    pipeline: str
    pipeline_file: str
    params: dict[str, Any]
    status: str
    runner: str
    resumed_from: str | None
    created_at: datetime
    ended_at: datetime | None
    error: str | None
    steps: tuple[PipelineStep, ...] = ()

    def step(self, name: str) -> PipelineStep:
        for s in self.steps:
            if s.step == name:
                return s
        raise NotFound(f"pipeline run {self.id} has no step {name!r}")
