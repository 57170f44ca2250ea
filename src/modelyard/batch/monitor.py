"""A scored batch feeds monitoring like a window of served requests does.

drift     the batch's rows (its dataset's seeded 10,000-row profile sample, which stands for
          every row) against the model's training reference — the same reference, tests
          and corrections as the online monitor (:mod:`modelyard.monitor.drift`)
report    the same HTML report as ``monitor report``, for this one batch
policies  each deployment serving the model gets a monitor pass whose newest window is the
          batch: its ``[[monitor.policies]]`` (retrain, alert) fire from it exactly as from
          online traffic, cooldowns and the retrain lease included
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import DataError, ModelyardError

if TYPE_CHECKING:
    from modelyard.monitor.check import CheckResult, Metrics, Observation
    from modelyard.monitor.drift import DriftReport
    from modelyard.monitor.policy import MonitorConfig
    from modelyard.store import DatasetVersion
    from modelyard.store.deploy_entities import Deployment
    from modelyard.store.models_entities import ModelVersion
    from modelyard.workspace import Workspace

SOURCE = "batch"


@dataclass(frozen=True)
class BatchDrift:
    report: DriftReport | None
    unavailable: str | None  # why there is no report (no training data in the lineage, …)

    @property
    def metrics(self) -> Metrics:
        if self.report is None:
            return {}
        return {
            "drift_share": float(self.report.drift_share),
            "drifted_features": float(self.report.n_drifted),
            "data_quality_findings": float(len(self.report.findings)),
        }


def batch_drift(ws: Workspace, model: ModelVersion, data: DatasetVersion) -> BatchDrift:
    """Drift of ``data`` (a scored dataset version) against ``model``'s training data."""
    import pyarrow.parquet as pq

    from modelyard.monitor.check import model_reference
    from modelyard.monitor.drift import detect_drift
    from modelyard.monitor.windows import WindowInfo

    reference, why = model_reference(ws, model.ref)
    if reference is None:
        return BatchDrift(None, why)
    profile = data.profile or {}
    digest = profile.get("sample_digest")
    if not digest:
        return BatchDrift(None, f"dataset {data.ref} has no profile sample")
    try:
        sample = pq.read_table(io.BytesIO(ws.artifacts.get_bytes(digest)))
    except ModelyardError as exc:
        return BatchDrift(None, exc.message)
    rows = int(profile.get("row_count") or sample.num_rows)
    when = data.created_at
    current = {
        name: sample.column(name).to_numpy(zero_copy_only=False)
        for name in reference.names
        if name in sample.column_names
    }
    report = detect_drift(
        reference, current, window=WindowInfo(start=when, end=when, requests=rows, rows=rows)
    )
    return BatchDrift(report, None)


def write_report(drift: BatchDrift, path: Path, *, title: str) -> Path:
    from modelyard.monitor.report_html import write_html_report

    if drift.report is None:
        raise DataError(f"no drift report for this batch: {drift.unavailable}")
    return write_html_report(path, drift=[drift.report], title=title)


def serving_deployments(ws: Workspace, model_name: str) -> list[Deployment]:
    """Deployments whose current revision serves a version of ``model_name``."""
    return [
        d
        for d in ws.store.deployments.all()
        if d.current is not None and d.current.model_name == model_name
    ]


def feed_policies(
    ws: Workspace,
    model: ModelVersion,
    drift: BatchDrift,
    *,
    rows: int,
    output: str,
    config: MonitorConfig | None = None,
) -> list[CheckResult]:
    """One monitor pass per deployment serving ``model``'s name, with the batch as the newest
    window after the windows of that deployment's recent passes (so ``for 2 windows`` can
    count an online window and a batch)."""
    from modelyard.monitor.check import check_deployment

    def gather(ws: Workspace, dep: Deployment, config: MonitorConfig) -> Observation:
        keep = max((p.windows_needed for p in config.policies_for(dep.name)), default=1)
        return _observation(ws, dep, drift, rows=rows, output=output, model=model, keep=keep)

    return [
        check_deployment(ws, dep.name, config=config, gather=gather)
        for dep in serving_deployments(ws, model.name)
    ]


def _observation(
    ws: Workspace,
    dep: Deployment,
    drift: BatchDrift,
    *,
    rows: int,
    output: str,
    model: ModelVersion,
    keep: int,
) -> Observation:
    from modelyard.monitor.check import Observation

    earlier: list[Metrics] = []
    for past in reversed(ws.store.monitoring.reports(dep.name, limit=max(keep - 1, 0) or 1)):
        latest = (past.metrics or {}).get("latest")
        if latest:
            earlier.append(dict(latest))
    window: Metrics = {"rows": float(rows), **drift.metrics}
    details: dict[str, Any] = {
        "source": SOURCE,
        "batch": {"output": output, "model": model.ref, "rows": rows},
        "drift": [drift.report.to_dict() if drift.report is not None else None],
        "quality": [None],
        "availability": None,
    }
    if drift.unavailable:
        details["drift_unavailable"] = drift.unavailable
    report = drift.report
    return Observation(
        windows=(*earlier, window),
        window_end=report.window.end if report is not None and report.window else None,
        details=details,
        objects={"drift": report, "quality": None},
    )
