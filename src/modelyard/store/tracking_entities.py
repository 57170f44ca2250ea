"""Values of the tracking stage (runs, their metrics and artifacts, lineage arrows) that leave
the store: frozen dataclasses, never rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

RUN_RUNNING = "running"


RUN_FINISHED = "finished"


RUN_FAILED = "failed"


RUN_LOST = "lost"  # never stored: a running run whose heartbeat went stale


@dataclass(frozen=True)
class Metric:
    key: str
    value: float
    step: int
    timestamp: datetime


@dataclass(frozen=True)
class RunArtifact:
    name: str
    digest: str
    kind: str  # "file" | "directory"
    size: int
    created_at: datetime


@dataclass(frozen=True)
class Run:
    id: str
    name: str | None
    pipeline: str | None
    parent_id: str | None
    status: str
    start_time: datetime
    end_time: datetime | None
    heartbeat_at: datetime
    error: str | None
    git_commit: str | None
    git_dirty: bool | None
    git_diff_digest: str | None
    python_version: str | None
    environment_digest: str | None
    host: str | None
    user: str | None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    latest_metrics: dict[str, float] = field(default_factory=dict)

    def effective_status(self, now: datetime, stale_after_s: float) -> str:
        """``lost`` for a run still marked running whose process stopped sending heartbeats."""
        if self.status == RUN_RUNNING and (now - self.heartbeat_at).total_seconds() > stale_after_s:
            return RUN_LOST
        return self.status


@dataclass(frozen=True)
class Edge:
    source_type: str
    source_id: str
    target_type: str
    target_id: str
    relation: str
    created_at: datetime
