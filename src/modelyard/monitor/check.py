"""One pass of the monitor over one deployment: gather, judge, act, record.

    gather  the newest windows of the prediction log → drift (vs the training data) and
            quality (vs feedback labels) per window, plus an availability probe
    judge   every policy that applies, over that series of windows (consecutive-window and
            minimum-label clauses included), minus those still cooling down
    act     alert (log + webhook) or retrain (under the model's lease)
    record  the report, what fired and why, and each action with its outcome; lineage
            ``deployment → monitor_report → pipeline run → model version → deployment``

Gathering is a function handed in (:data:`Gatherer`), so tests and other data sources can
provide observations without a running server; :func:`gather_reports` is the real one.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelyard.monitor.policy import ALERT, MonitorConfig, Policy, load_config
from modelyard.monitor.windows import prediction_log_dir

if TYPE_CHECKING:
    from modelyard.monitor.retrain import RetrainPlan
    from modelyard.store.deploy_entities import Deployment
    from modelyard.store.monitor_entities import MonitorReport
    from modelyard.workspace import Workspace

logger = logging.getLogger("modelyard.monitor")

FIRED = "fired"  # conditions held and the action ran
COOLDOWN = "cooldown"  # conditions held, but the policy acted too recently

Metrics = dict[str, float | None]


@dataclass(frozen=True)
class Observation:
    """What the monitor saw: one metrics mapping per window (oldest first), the end of the
    newest window, the full reports as JSON-safe dicts (stored), and the report objects
    themselves for rendering (not stored)."""

    windows: tuple[Metrics, ...]
    window_end: dt.datetime | None = None
    details: dict[str, Any] = field(default_factory=dict)
    objects: dict[str, Any] = field(default_factory=dict)

    @property
    def latest(self) -> Metrics:
        return dict(self.windows[-1]) if self.windows else {}


Gatherer = Callable[["Workspace", "Deployment", MonitorConfig], Observation]


@dataclass(frozen=True)
class Firing:
    policy: str
    action: str
    reasons: tuple[str, ...]
    status: str  # fired | cooldown
    outcome: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "policy": self.policy,
            "action": self.action,
            "reasons": list(self.reasons),
            "status": self.status,
            "outcome": dict(self.outcome),
        }


@dataclass(frozen=True)
class CheckResult:
    deployment: str
    report: MonitorReport
    observation: Observation
    firings: tuple[Firing, ...]

    @property
    def fired(self) -> bool:
        """Whether any policy's conditions held (acted on, or held back by its cooldown)."""
        return bool(self.firings)


def new_holder() -> str:
    """A name for this monitor in leases: host, process and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def check_deployment(
    ws: Workspace,
    deployment: str,
    *,
    config: MonitorConfig | None = None,
    gather: Gatherer | None = None,
    retrain_plan: RetrainPlan | None = None,
    holder: str | None = None,
    now: dt.datetime | None = None,
) -> CheckResult:
    """Run one monitor pass over ``deployment`` and record it (see the module docstring)."""
    config = config if config is not None else load_config(ws.settings.section("monitor"))
    dep = ws.store.deployments.get(deployment)
    observation = (gather or gather_reports)(ws, dep, config)
    current = dep.current
    repo = ws.store.monitoring
    report = repo.add_report(
        dep.name,
        model_name=current.model_name if current else None,
        model_version=current.model_version if current else None,
        window_end=observation.window_end,
        metrics={"latest": observation.latest, "windows": [dict(w) for w in observation.windows]},
        details=observation.details,
    )
    ws.store.lineage.add("deployment", dep.name, "monitor_report", str(report.id), "monitored")
    now = now or dt.datetime.now(dt.UTC)
    holder = holder or new_holder()
    firings: list[Firing] = []
    for policy in config.policies_for(dep.name):
        reasons = policy.check(observation.windows)
        if not reasons:
            continue
        waited = _cooling_until(ws, dep.name, policy, now)
        if waited is not None:
            firings.append(
                Firing(policy.name, policy.action, tuple(reasons), COOLDOWN, {"until": waited})
            )
            continue
        outcome = _act(
            ws, dep, policy, config, report.id, tuple(reasons), observation, holder, retrain_plan
        )
        firings.append(Firing(policy.name, policy.action, tuple(reasons), FIRED, outcome))
    repo.set_fired(report.id, [f.to_dict() for f in firings])
    return CheckResult(dep.name, repo.get_report(report.id), observation, tuple(firings))


def _cooling_until(ws: Workspace, deployment: str, policy: Policy, now: dt.datetime) -> str | None:
    """When the policy's cooldown ends, if it acted too recently (skipped attempts — another
    monitor held the lease — do not count)."""
    for action in ws.store.monitoring.actions(deployment, policy=policy.name, limit=20):
        if action.status == "skipped":
            continue
        until = action.started_at + dt.timedelta(seconds=policy.cooldown_s)
        return until.isoformat() if until > now else None
    return None


def _act(
    ws: Workspace,
    dep: Deployment,
    policy: Policy,
    config: MonitorConfig,
    report_id: int,
    reasons: tuple[str, ...],
    observation: Observation,
    holder: str,
    retrain_plan: RetrainPlan | None,
) -> dict[str, Any]:
    repo = ws.store.monitoring
    if policy.action == ALERT:
        from modelyard.monitor.actions import send_alert

        body = {
            "event": "modelyard.monitor.alert",
            "deployment": dep.name,
            "model": dep.current.model_ref if dep.current else None,
            "policy": policy.name,
            "reasons": list(reasons),
            "report_id": report_id,
            "metrics": observation.latest,
            "at": dt.datetime.now(dt.UTC).isoformat(),
        }
        result = send_alert(
            body,
            policy.webhook,
            allow_private=config.allow_private_webhooks,
            allow=config.webhook_allow,
        )
        status = "sent" if result.sent else ("failed" if result.error else "logged")
        detail = {"webhook_status": result.status, "error": result.error}
        repo.add_action(
            report_id=report_id,
            deployment=dep.name,
            policy=policy.name,
            action=ALERT,
            status=status,
            reason="; ".join(reasons),
            detail=detail,
            finished=True,
        )
        return {"status": status, **detail}
    from modelyard.monitor.retrain import retrain

    outcome = retrain(
        ws, dep.name, policy, config, holder=holder, report_id=report_id, plan=retrain_plan
    )
    return outcome.to_dict()


# --- the real gatherer ------------------------------------------------------------------------


def gather_reports(ws: Workspace, dep: Deployment, config: MonitorConfig) -> Observation:
    """Drift and quality of the newest windows of the served version's prediction log, and an
    availability probe of the deployment's endpoint."""
    current = dep.current
    if current is None:
        return Observation(windows=())
    log_dir = prediction_log_dir(dep)
    keep = max((p.windows_needed for p in config.policies_for(dep.name)), default=1)
    windows = _recent_windows(log_dir, config.window_requests, keep, str(current.model_version))
    series: list[Metrics] = []
    drift_docs: list[Any] = []
    quality_docs: list[Any] = []
    objects: dict[str, Any] = {}
    if windows:
        reference, why = model_reference(ws, current.model_ref)
        if reference is None:
            objects["drift_unavailable"] = why
        for window in windows:
            metrics, drift, quality = _judge_window(log_dir, window, reference)
            series.append(metrics)
            drift_docs.append(drift.to_dict() if drift is not None else None)
            quality_docs.append(quality.to_dict() if quality is not None else None)
            objects["drift"], objects["quality"] = drift, quality
    availability = _probe(ws, dep)
    if availability is not None:
        from modelyard.monitor.availability import totals

        objects["availability"] = availability
        traffic = totals(availability)  # every replica's counts, summed
        extra: Metrics = {"up": 1.0 if availability.healthy else 0.0}
        if availability.endpoints:
            extra["requests_served"] = traffic.requests
            extra["error_rate"] = traffic.error_rate
            for key in ("p50", "p95", "p99"):
                value = traffic.latency_ms.get(key)
                extra[f"latency_{key}_ms"] = None if value is None else float(value)
        if series:
            series[-1] = {**series[-1], **extra}
        else:
            series.append(extra)
    return Observation(
        windows=tuple(series),
        window_end=windows[-1].info.end if windows else None,
        details={
            "drift": drift_docs,
            "quality": quality_docs,
            "availability": availability.to_dict() if availability is not None else None,
        },
        objects=objects,
    )


def _recent_windows(log_dir: Any, size: int, keep: int, version: str) -> list[Any]:
    """The ``keep`` newest windows of ``size`` requests; a trailing partial window counts only
    if it holds at least half a window (a handful of requests says nothing about drift)."""
    from modelyard.monitor.windows import iter_windows

    if log_dir is None or not (log_dir / "predictions").is_dir():
        return []
    recent: deque[Any] = deque(maxlen=keep + 1)
    for window in iter_windows(log_dir, requests=size, model_version=version):
        recent.append(window)
    out = list(recent)
    if out and out[-1].info.requests < max(1, size // 2):
        out.pop()
    return out[-keep:]


def model_reference(ws: Workspace, model_ref: str) -> tuple[Any, str | None]:
    """The training data of ``model_ref`` as a drift reference, over the model inputs that the
    dataset has (engineered features computed inside the pipeline are not in it); None and
    why when there is no such data."""
    from modelyard.errors import ModelyardError
    from modelyard.models import resolve
    from modelyard.monitor.reference import load_reference, training_dataset

    try:
        version = resolve(model_ref, ws)
        dataset = training_dataset(ws, model_ref)
        columns = {c.get("name") for c in (dataset.profile or {}).get("columns", [])}
        inputs = [i.get("name") for i in (version.signature or {}).get("inputs", [])]
        features = [n for n in inputs if n in columns] or None
        return load_reference(model_ref, features=features, workspace=ws), None
    except ModelyardError as exc:
        logger.info("no drift reference for %s: %s", model_ref, exc.message)
        return None, exc.message


def _judge_window(log_dir: Any, window: Any, reference: Any) -> tuple[Metrics, Any, Any]:
    from modelyard.monitor.drift import detect_drift
    from modelyard.monitor.quality import evaluate_quality, join_feedback
    from modelyard.monitor.windows import read_labels

    metrics: Metrics = {"requests": float(window.info.requests), "labels": 0.0}
    drift = None
    if reference is not None:
        drift = detect_drift(reference, window.inputs(reference.names), window=window.info)
        metrics["drift_share"] = float(drift.drift_share)
        metrics["drifted_features"] = float(drift.n_drifted)
        metrics["data_quality_findings"] = float(len(drift.findings))
    quality = None
    labels = read_labels(log_dir, window.request_ids)
    if labels:
        quality = evaluate_quality(join_feedback(window, labels), min_labels=1)
        metrics["labels"] = float(quality.n_labelled)
        for metric in quality.metrics:
            metrics[metric.name] = None if metric.value is None else float(metric.value)
    return metrics, drift, quality


def _probe(ws: Workspace, dep: Deployment) -> Any:
    """Health and ``/metrics`` of each running replica (a proxy's ``/metrics`` answers for one
    replica at a time); when none runs, the recorded endpoint, so the outage shows."""
    from modelyard.deploy.service import replica_urls
    from modelyard.monitor.availability import check_availability

    urls = replica_urls(ws, dep)
    if not urls:
        if dep.port is None:
            return None
        host = str((dep.config or {}).get("host") or "127.0.0.1")
        urls = [f"http://{host}:{dep.port}"]
    return check_availability(urls)
