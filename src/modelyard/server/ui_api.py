"""Read-only JSON for the dashboard: shaped for pages, not for the remote client.

Every route needs the ``read`` permission (declared once, on the router). Lists are paginated
and filtered in SQL, so a page costs the same with ten runs or ten thousand. Stages whose
repositories a store may lack (deployments, monitoring) degrade to empty answers with
``"available": false`` instead of failing the whole page.
"""

from __future__ import annotations

import dataclasses
import math
from collections import deque
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any, Final

from fastapi import APIRouter, Query, Request

from modelyard.errors import InvalidParameter, NotFound
from modelyard.server.auth import require

if TYPE_CHECKING:
    from modelyard.store.tracking_entities import Run
    from modelyard.workspace import Workspace

router = APIRouter(prefix="/ui", tags=["dashboard"], dependencies=[require("read")])

MAX_PAGE: Final = 500
MAX_COMPARE: Final = 10
MAX_POINTS: Final = 500  # per metric series in the compare view; longer ones are thinned
MAX_LINEAGE_NODES: Final = 300
RUN_SORTS: Final = ("start_time", "end_time", "name", "status", "metric")

Json = dict[str, Any]


def _ws(request: Request) -> Workspace:
    ws: Workspace = request.app.state.workspace
    return ws


def _plain(value: Any) -> Any:
    """JSON-safe: dataclasses become dicts, datetimes ISO strings, NaN and infinities None."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _optional(ws: Workspace, name: str) -> Any:
    """A stage's repository, or None when this store has none (older server, remote store)."""
    return getattr(ws.store, name, None)


# -- overview ------------------------------------------------------------------------------------


@router.get("/summary")
def summary(request: Request) -> Json:
    """Counts for the landing page."""
    ws = _ws(request)
    deployments = _optional(ws, "deployments")
    return {
        "workspace": ws.root.name,
        "runs": ws.store.runs.count(),
        "datasets": len(ws.store.datasets.all()),
        "models": len(ws.store.models.all()),
        "deployments": len(deployments.all()) if deployments is not None else None,
    }


# -- runs ----------------------------------------------------------------------------------------


def _run_row(run: Run, now: datetime, stale_after_s: float) -> Json:
    duration = (run.end_time or now) - run.start_time
    return {
        "id": run.id,
        "name": run.name,
        "pipeline": run.pipeline,
        "parent_id": run.parent_id,
        "status": run.effective_status(now, stale_after_s),
        "start_time": run.start_time.isoformat(),
        "end_time": run.end_time.isoformat() if run.end_time else None,
        "duration_s": round(duration.total_seconds(), 3),
        "user": run.user,
        "git_commit": run.git_commit,
        "params": run.params,
        "tags": run.tags,
        "metrics": _plain(run.latest_metrics),
    }


def _stale_after(ws: Workspace) -> float:
    from modelyard.tracking.settings import TrackingSettings

    return TrackingSettings.of(ws).stale_after_s


@router.get("/runs")
def runs(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0)] = 0,
    status: Annotated[str | None, Query(max_length=16)] = None,
    pipeline: Annotated[str | None, Query(max_length=256)] = None,
    q: Annotated[str | None, Query(max_length=256)] = None,
    sort: Annotated[str, Query(max_length=16)] = "start_time",
    order: Annotated[str, Query(pattern="^(asc|desc)$")] = "desc",
    metric: Annotated[str | None, Query(max_length=256)] = None,
) -> Json:
    """One page of runs, newest first by default, with the total matching the filters."""
    from datetime import UTC

    if sort not in RUN_SORTS:
        raise InvalidParameter(f"sort must be one of {', '.join(RUN_SORTS)}, not {sort!r}")
    ws = _ws(request)
    page, total = ws.store.runs.page(
        limit=limit,
        offset=offset,
        status=status or None,
        pipeline=pipeline or None,
        text=(q or "").strip() or None,
        sort=sort,
        descending=order == "desc",
        metric=metric,
    )
    now, stale = datetime.now(UTC), _stale_after(ws)
    return {
        "total": total,
        "limit": limit,
        "offset": offset,
        "items": [_run_row(r, now, stale) for r in page],
    }


@router.get("/runs/pipelines")
def run_pipelines(request: Request) -> Json:
    """The pipeline names that have runs (the runs page's filter choices)."""
    return {"items": _ws(request).store.runs.pipelines()}


@router.get("/runs/{run_id}")
def run_detail(request: Request, run_id: str) -> Json:
    """One run with its artifacts, metric names, children and the model versions it made."""
    from datetime import UTC

    ws = _ws(request)
    run = ws.store.runs.get(run_id)
    now, stale = datetime.now(UTC), _stale_after(ws)
    children = ws.store.runs.search(parent_id=run.id, limit=MAX_PAGE)
    return {
        **_run_row(run, now, stale),
        "error": run.error,
        "host": run.host,
        "python_version": run.python_version,
        "environment_digest": run.environment_digest,
        "git_dirty": run.git_dirty,
        "artifacts": _plain(ws.store.runs.artifacts(run.id)),
        "metric_keys": ws.store.runs.metric_keys([run.id]),
        "children": [_run_row(c, now, stale) for c in children],
        "models": [v.ref for v in ws.store.models.versions_of_run(run.id)],
    }


def _thin(points: list[list[float]]) -> list[list[float]]:
    """At most MAX_POINTS points, evenly spaced, always keeping the last one."""
    if len(points) <= MAX_POINTS:
        return points
    stride = math.ceil(len(points) / MAX_POINTS)
    kept = points[::stride]
    if kept[-1] is not points[-1]:
        kept.append(points[-1])
    return kept


@router.get("/compare")
def compare(
    request: Request,
    runs: Annotated[list[str], Query(min_length=1, max_length=MAX_COMPARE)],
) -> Json:
    """Runs side by side: their parameters, last metric values, and every metric's history
    (``series[key][run_id] = [[step, value], …]``) for the charts."""
    from datetime import UTC

    ws = _ws(request)
    found = [ws.store.runs.get(r) for r in dict.fromkeys(runs)]
    now, stale = datetime.now(UTC), _stale_after(ws)
    series: dict[str, dict[str, list[list[float]]]] = {}
    for run in found:
        for point in ws.store.runs.metric_history(run.id):
            if math.isfinite(point.value):
                by_run = series.setdefault(point.key, {})
                by_run.setdefault(run.id, []).append([point.step, point.value])
    return {
        "runs": [_run_row(r, now, stale) for r in found],
        "keys": sorted(series),
        "series": {k: {r: _thin(p) for r, p in v.items()} for k, v in series.items()},
    }


# -- datasets ------------------------------------------------------------------------------------


def _version_summary(v: Any) -> Json:
    profile = v.profile or {}
    return {
        "ref": v.ref,
        "version": v.version,
        "digest": v.digest,
        "kind": v.kind,
        "format": v.format,
        "size": v.size,
        "file_count": v.file_count,
        # The profile names them row_count / column_count (modelyard.data.profile).
        "rows": profile.get("row_count"),
        "columns": profile.get("column_count") or len(profile.get("columns") or []) or None,
        "source": v.source,
        "description": v.description,
        "created_at": v.created_at.isoformat(),
        "created_by": v.created_by,
    }


@router.get("/datasets")
def datasets(request: Request) -> Json:
    return {"items": _plain(_ws(request).store.datasets.all())}


@router.get("/datasets/{name}")
def dataset(request: Request, name: str) -> Json:
    """A dataset and its versions (newest first), without the profiles."""
    ws = _ws(request)
    info = ws.store.datasets.get(name)
    versions = ws.store.datasets.versions(name)
    return {**_plain(info), "versions": [_version_summary(v) for v in reversed(versions)]}


@router.get("/datasets/{name}/versions/{version}")
def dataset_version(request: Request, name: str, version: int) -> Json:
    """One version with its schema and profile."""
    v = _ws(request).store.datasets.get_version(name, version)
    return {**_version_summary(v), "schema": _plain(v.schema), "profile": _plain(v.profile)}


@router.get("/datasets/{name}/diff")
def dataset_diff(request: Request, name: str, a: int, b: int) -> Json:
    """What changed from version ``a`` to version ``b``: files, columns, types, shifts."""
    from modelyard.data import diff

    result = diff(f"{name}@{a}", f"{name}@{b}", workspace=_ws(request))
    return {
        "a": result.a.ref,
        "b": result.b.ref,
        "identical": result.identical,
        "files_added": list(result.files_added),
        "files_removed": list(result.files_removed),
        "files_changed": list(result.files_changed),
        "columns_added": list(result.columns_added),
        "columns_removed": list(result.columns_removed),
        "type_changes": _plain(result.type_changes),
        "shifts": _plain(result.shifts),
        "row_count_a": result.row_count_a,
        "row_count_b": result.row_count_b,
    }


# -- registry ------------------------------------------------------------------------------------


@router.get("/models")
def models(request: Request) -> Json:
    return {"items": _plain(_ws(request).store.models.all())}


@router.get("/models/{name}")
def model(request: Request, name: str) -> Json:
    """A registered model, its versions (newest first), the history of its aliases, and the
    newest versions side by side (``compare``)."""
    ws = _ws(request)
    repo = ws.store.models
    info = repo.get(name)
    versions = list(reversed(repo.versions(name)))
    history = list(reversed(repo.alias_history(name)))
    return {
        **_plain(info),
        # ``ref`` is a property, which dataclasses.fields (and so _plain) does not see.
        "versions": [{**_plain(v), "ref": v.ref} for v in versions],
        "alias_history": _plain(history),
        "compare": [_side(ws, v, history) for v in versions[:MAX_COMPARE]],
    }


def _side(ws: Workspace, version: Any, history: list[Any]) -> Json:
    """One version's column in the comparison: what trained it (metrics and datasets found
    upstream of its run), its image, who pointed which alias at it, and how it fares today
    against the gates of every alias the model has had."""
    from modelyard.models.gates import evaluate
    from modelyard.models.provenance import provenance

    found = provenance(ws, version)
    gates = {}
    for alias in sorted({h.alias for h in history}):
        report = evaluate(ws, version, alias)
        if report.results:
            gates[alias] = {
                "passed": report.passed,
                "checks": [
                    {"check": r.check, "passed": r.passed, "actual": r.actual, "detail": r.detail}
                    for r in report.results
                ],
            }
    return {
        "version": version.version,
        "ref": version.ref,
        "metrics": _plain(found.metrics),
        "datasets": found.datasets,
        "image": version.image_ref or version.image_digest,
        "gates": _plain(gates),
        "promotions": [
            {"alias": h.alias, "by": h.actor, "at": h.moved_at.isoformat(), "forced": h.forced}
            for h in history
            if h.to_version == version.version
        ],
    }


# -- deployments ---------------------------------------------------------------------------------


def _health_point(report: Any) -> Json:
    latest = (report.metrics or {}).get("latest") or {}
    availability = (report.details or {}).get("availability") or {}
    endpoints = availability.get("endpoints") or []
    counters = [e.get("requests") for e in endpoints if e.get("requests") is not None]
    return {
        "report": report.id,
        "at": report.created_at.isoformat(),
        "t": report.created_at.timestamp(),
        "up": latest.get("up"),
        "error_rate": latest.get("error_rate"),
        "p50_ms": latest.get("latency_p50_ms"),
        "p99_ms": latest.get("latency_p99_ms"),
        "requests_total": sum(counters) if counters else None,
        "window_requests": latest.get("requests"),
    }


def _with_rates(points: list[Json]) -> list[Json]:
    """Requests per second between consecutive reports, from the servers' request counters
    (oldest first; a counter that went down means a restart, and no rate)."""
    previous: Json | None = None
    for point in points:
        rate = None
        if previous is not None:
            a, b = previous["requests_total"], point["requests_total"]
            seconds = point["t"] - previous["t"]
            if a is not None and b is not None and b >= a and seconds > 0:
                rate = (b - a) / seconds
        point["request_rate"] = rate
        previous = point
    return points


def _deployment_doc(dep: Any) -> Json:
    current = dep.current
    return {
        "name": dep.name,
        "target": dep.target,
        "status": dep.status,
        "revision": dep.revision,
        "port": dep.port,
        "replicas": dep.replicas,
        "model": current.model_ref if current else None,
        "image": current.image_ref if current else None,
        "image_digest": current.image_digest if current else None,
        "created_at": dep.created_at.isoformat(),
        "updated_at": dep.updated_at.isoformat(),
    }


@router.get("/deployments")
def deployments(request: Request) -> Json:
    """Every deployment with the health its newest monitor report saw."""
    ws = _ws(request)
    repo, monitoring = _optional(ws, "deployments"), _optional(ws, "monitoring")
    if repo is None:
        return {"available": False, "items": []}
    items = []
    for dep in repo.all():
        doc = _deployment_doc(dep)
        recent = monitoring.reports(dep.name, limit=2) if monitoring is not None else []
        points = _with_rates([_health_point(r) for r in reversed(recent)])
        doc["health"] = points[-1] if points else None
        items.append(doc)
    return {"available": True, "items": items}


@router.get("/deployments/{name}")
def deployment(
    request: Request, name: str, limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100
) -> Json:
    """A deployment, its revisions and events, and its health over the last reports."""
    ws = _ws(request)
    repo, monitoring = _optional(ws, "deployments"), _optional(ws, "monitoring")
    if repo is None:
        raise NotFound(f"no deployment named {name!r} (this store records no deployments)")
    dep = repo.get(name)
    reports = monitoring.reports(dep.name, limit=limit) if monitoring is not None else []
    return {
        **_deployment_doc(dep),
        "config": _plain(dep.config),
        "revisions": _plain(list(reversed(dep.revisions))),
        "events": _plain(list(reversed(repo.events(dep.name, limit=50)))),
        "health": _with_rates([_health_point(r) for r in reversed(reports)]),
        "rollouts": _plain(_rollouts(ws, dep.name)) if monitoring is not None else [],
    }


def _rollouts(ws: Any, name: str) -> list[dict[str, Any]]:
    """The latest progressive rollouts (shadow/canary) with every step's analysis table."""
    from modelyard.monitor.progressive import rollouts

    return rollouts(ws, name, limit=5)


# -- monitoring ----------------------------------------------------------------------------------


def _drift_of(report: Any) -> Json:
    """Per-feature verdicts of the newest window a report judged."""
    docs = (report.details or {}).get("drift") or []
    newest = next((d for d in reversed(docs) if d), None)
    if not newest:
        return {}
    return {
        f["name"]: {
            "drifted": bool(f.get("drifted")),
            "p_value": f.get("p_adjusted", f.get("p_value")),
            "statistic": f.get("statistic"),
            "psi": f.get("psi"),
            "test": f.get("test"),
        }
        for f in newest.get("features") or []
    }


@router.get("/monitoring")
def monitoring(
    request: Request,
    deployment: Annotated[str | None, Query(max_length=256)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 100,
) -> Json:
    """Reports oldest first (drift per feature, quality and health metrics, alerts fired)
    and the monitor's actions newest first (retrain decisions and their outcome)."""
    ws = _ws(request)
    repo = _optional(ws, "monitoring")
    if repo is None:
        return {"available": False, "deployments": [], "reports": [], "actions": []}
    reports = list(reversed(repo.reports(deployment, limit=limit)))
    names = sorted({r.deployment for r in repo.reports(None, limit=MAX_PAGE)})
    return {
        "available": True,
        "deployments": names,
        "reports": [
            {
                "id": r.id,
                "deployment": r.deployment,
                "model": f"{r.model_name}@{r.model_version}" if r.model_name else None,
                "created_at": r.created_at.isoformat(),
                "window_end": r.window_end.isoformat() if r.window_end else None,
                "metrics": _plain((r.metrics or {}).get("latest") or {}),
                "drift": _plain(_drift_of(r)),
                "fired": _plain(r.fired),
            }
            for r in reports
        ],
        "actions": _plain(repo.actions(deployment, limit=limit)),
    }


# -- lineage -------------------------------------------------------------------------------------


@router.get("/lineage")
def lineage(
    request: Request,
    type: Annotated[str, Query(min_length=1, max_length=32)],
    id: Annotated[str, Query(min_length=1, max_length=256)],
    depth: Annotated[int, Query(ge=1, le=50)] = 12,
) -> Json:
    """The graph around one node: everything upstream of it (what it came from) and
    downstream (what came of it), each walked ``depth`` arrows far, as nodes and edges ready
    to lay out. Siblings are not pulled in, so the graph stays about this node."""
    from modelyard.lineage import default_node_types

    ws = _ws(request)
    types = default_node_types()
    root = (type, id)
    nodes: dict[tuple[str, str], int] = {root: 0}
    edges: dict[tuple[str, str, str, str, str], None] = {}
    truncated = False
    repo = ws.store.lineage
    for upstream in (True, False):
        seen = {root}
        queue = deque([(root, 0)])
        while queue:
            (node_type, node_id), level = queue.popleft()
            if level >= depth:
                truncated = True
                continue
            arrows = (repo.edges_to if upstream else repo.edges_from)(node_type, node_id)
            for e in arrows:
                edges[(e.source_type, e.source_id, e.target_type, e.target_id, e.relation)] = None
                other = (e.source_type, e.source_id) if upstream else (e.target_type, e.target_id)
                if other in seen:
                    continue
                if len(nodes) >= MAX_LINEAGE_NODES and other not in nodes:
                    truncated = True
                    continue
                seen.add(other)
                nodes.setdefault(other, -(level + 1) if upstream else level + 1)
                queue.append((other, level + 1))
    if len(nodes) == 1 and not edges:
        _check_exists(ws, type, id)
    return {
        "root": {"type": type, "id": id},
        "truncated": truncated,
        "nodes": [
            {"type": t, "id": i, "label": types.label(ws, t, i), "level": level}
            for (t, i), level in nodes.items()
        ],
        "edges": [
            {"source": f"{st}:{si}", "target": f"{tt}:{ti}", "relation": rel}
            for st, si, tt, ti, rel in edges
            if (st, si) in nodes and (tt, ti) in nodes
        ],
    }


def _check_exists(ws: Workspace, node_type: str, node_id: str) -> None:
    """A lone node must exist, so a mistyped link says 404 rather than drawing one box."""
    from modelyard.errors import InvalidReference

    try:
        if node_type == "run":
            ws.store.runs.get(node_id)
        elif node_type == "dataset_version":
            name, _, version = node_id.rpartition("@")
            ws.store.datasets.get_version(name, int(version))
        elif node_type == "model_version":
            name, _, version = node_id.rpartition("@")
            ws.store.models.get_version(name, int(version))
        elif node_type == "deployment" and _optional(ws, "deployments") is not None:
            ws.store.deployments.get(node_id)
        else:
            raise NotFound(f"no lineage recorded for {node_type} {node_id!r}")
    except (ValueError, InvalidReference):
        raise NotFound(f"no {node_type} {node_id!r}") from None
