"""The ``monitor_report`` node type for :mod:`modelyard.tracking.lineage` (ids are report
numbers; name one as ``monitor_report:12`` or ``report:12``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelyard.errors import NotFound

if TYPE_CHECKING:
    from modelyard.tracking.lineage import NodeType
    from modelyard.workspace import Workspace


def _label(ws: Workspace, node_id: str) -> str:
    try:
        report = ws.store.monitoring.get_report(int(node_id))
    except (NotFound, ValueError):
        return f"monitor report {node_id} (missing)"
    latest = report.metrics.get("latest", {}) if isinstance(report.metrics, dict) else {}
    shown = []
    for key in ("drift_share", "accuracy", "labels"):
        value = latest.get(key)
        if value is not None:
            shown.append(f"{key} {value:.3g}")
    fired = [f["policy"] for f in report.fired if f.get("status") == "fired"]
    why = f"; fired {', '.join(fired)}" if fired else ""
    stamp = report.created_at.strftime("%Y-%m-%d %H:%M:%S")
    return f"monitor report {report.id} of {report.deployment} at {stamp} ({', '.join(shown)}{why})"


def _resolve(ws: Workspace, text: str) -> str | None:
    text = text.strip()
    prefix, sep, rest = text.partition(":")
    if sep and prefix == "report":
        text = rest
    if not text.isdigit():  # also reached as "monitor_report:12", with "12" left
        return None
    try:
        return str(ws.store.monitoring.get_report(int(text)).id)
    except NotFound:
        return None


def monitor_report_node() -> NodeType:
    from modelyard.tracking.lineage import NodeType

    return NodeType("monitor_report", "monitor report", _label, _resolve)


def _rollout(ws: Workspace, node_id: str) -> dict[str, Any] | None:
    try:
        action = next(
            (a for a in ws.store.monitoring.actions(action="rollout", limit=1000)
             if str(a.id) == node_id),
            None,
        )  # fmt: skip
    except ValueError:
        return None
    if action is None:
        return None
    return {"status": action.status, "reason": action.reason, "deployment": action.deployment,
            **action.detail}  # fmt: skip


def _rollout_label(ws: Workspace, node_id: str) -> str:
    found = _rollout(ws, node_id)
    if found is None:
        return f"rollout {node_id} (missing)"
    return (
        f"{found.get('strategy')} rollout {node_id} of {found.get('candidate')} on "
        f"{found['deployment']} (serving {found.get('primary')}): {found['status']}"
        + (f" - {found['reason']}" if found.get("reason") else "")
    )


def _step_label(ws: Workspace, node_id: str) -> str:
    from modelyard.monitor.analysis import Analysis

    rollout_id, _, index = node_id.partition(".")
    found = _rollout(ws, rollout_id) or {}
    step = next((s for s in found.get("steps", []) if str(s.get("index")) == index), None)
    if step is None:
        return f"rollout step {node_id} (missing)"
    analysis = Analysis.from_dict(step["analysis"])
    checks = ", ".join(f"{r.check} {r.verdict}" for r in analysis.results)
    return (
        f"step {index}: {step['mode']} {step['percent']:g} % - "
        f"{'passed' if analysis.passed else 'FAILED'} ({checks})"
    )


def _resolve_rollout(ws: Workspace, text: str) -> str | None:
    prefix, sep, rest = text.strip().partition(":")
    if sep and prefix == "rollout":  # also reached as "7" once a typed prefix was taken off
        text = rest
    if sep and prefix != "rollout" or not text.strip().isdigit():
        return None
    return text.strip() if _rollout(ws, text.strip()) is not None else None


def rollout_node() -> NodeType:
    """A progressive rollout (id: its monitor action's number; name one as ``rollout:7``)."""
    from modelyard.tracking.lineage import NodeType

    return NodeType("rollout", "rollout", _rollout_label, _resolve_rollout)


def rollout_step_node() -> NodeType:
    from modelyard.tracking.lineage import NodeType

    return NodeType("rollout_step", "rollout step", _step_label, lambda ws, text: None)
