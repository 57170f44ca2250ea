"""The ``monitor_report`` node type for :mod:`modelyard.tracking.lineage` (ids are report
numbers; name one as ``monitor_report:12`` or ``report:12``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

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
