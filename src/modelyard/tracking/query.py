"""Reading runs back: listing with the ``lost`` status worked out, one run with its inputs and
outputs, and several runs side by side. The CLI and the server render these values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

from modelyard.errors import InvalidParameter
from modelyard.tracking.settings import TrackingSettings

if TYPE_CHECKING:
    from modelyard.store.tracking_entities import Edge, Run, RunArtifact
    from modelyard.workspace import Workspace

STATUSES = ("running", "finished", "failed", "lost")


@dataclass(frozen=True)
class RunSummary:
    run: Run
    status: str  # the effective status: "lost" for a running run with a stale heartbeat

    @property
    def duration_s(self) -> float | None:
        """Until the end, or for a live or lost run until its last sign of life."""
        until = self.run.end_time or self.run.heartbeat_at
        return max(0.0, (until - self.run.start_time).total_seconds())


@dataclass(frozen=True)
class RunDetails(RunSummary):
    inputs: tuple[Edge, ...] = ()  # arrows into the run (datasets read, parent run)
    outputs: tuple[Edge, ...] = ()  # arrows out of it (artifacts, models, child runs)
    artifacts: tuple[RunArtifact, ...] = ()
    metric_steps: dict[str, int] | None = None  # how many points each metric has


def list_runs(
    ws: Workspace,
    *,
    limit: int = 50,
    status: str | None = None,
    pipeline: str | None = None,
    now: datetime | None = None,
    stale_after_s: float | None = None,
) -> list[RunSummary]:
    """Newest first. ``status`` may be ``lost``, which no row stores: it is a running run
    whose heartbeat is older than ``stale_after_s`` (default: from the workspace settings)."""
    if status is not None and status not in STATUSES:
        raise InvalidParameter(f"status must be one of {', '.join(STATUSES)}, not {status!r}")
    if limit < 1:
        raise InvalidParameter(f"limit must be at least 1, not {limit}")
    now = now or datetime.now(UTC)
    stale = stale_after_s if stale_after_s is not None else TrackingSettings.of(ws).stale_after_s
    cutoff = now - timedelta(seconds=stale)
    runs = ws.store.runs.search(
        limit=limit,
        status="running" if status == "lost" else status,
        pipeline=pipeline,
        heartbeat_before=cutoff if status == "lost" else None,
        heartbeat_since=cutoff if status == "running" else None,
    )
    return [RunSummary(r, r.effective_status(now, stale)) for r in runs]


def get_run(
    ws: Workspace,
    id_or_prefix: str,
    *,
    now: datetime | None = None,
    stale_after_s: float | None = None,
) -> RunDetails:
    """One run (by id or unique prefix) with its lineage arrows and artifacts."""
    run = ws.store.runs.get(id_or_prefix)
    now = now or datetime.now(UTC)
    stale = stale_after_s if stale_after_s is not None else TrackingSettings.of(ws).stale_after_s
    steps = ws.store.runs.metric_counts(run.id)  # counted in SQL, no point is loaded
    return RunDetails(
        run=run,
        status=run.effective_status(now, stale),
        inputs=tuple(ws.store.lineage.edges_to("run", run.id)),
        outputs=tuple(ws.store.lineage.edges_from("run", run.id)),
        artifacts=tuple(ws.store.runs.artifacts(run.id)),
        metric_steps=steps,
    )


@dataclass(frozen=True)
class Comparison:
    """Runs side by side: for each parameter and metric key, one value per run (None when a
    run lacks it) and whether they differ."""

    runs: tuple[Run, ...]
    params: tuple[tuple[str, tuple[str | None, ...], bool], ...]
    metrics: tuple[tuple[str, tuple[float | None, ...], bool], ...]


def compare_runs(ws: Workspace, ids: Sequence[str]) -> Comparison:
    if len(ids) < 2:
        raise InvalidParameter("compare needs at least two runs")
    runs = tuple(ws.store.runs.get(i) for i in ids)
    param_keys = sorted({k for r in runs for k in r.params})
    metric_keys = sorted({k for r in runs for k in r.latest_metrics})
    params = tuple(
        (k, values, len(set(values)) > 1)
        for k in param_keys
        for values in [tuple(r.params.get(k) for r in runs)]
    )
    metrics = tuple(
        (k, mvalues, len(set(mvalues)) > 1)
        for k in metric_keys
        for mvalues in [tuple(r.latest_metrics.get(k) for r in runs)]
    )
    return Comparison(runs, params, metrics)
