"""A deployment's monitoring history from the store, and its HTML report.

The store keeps every pass (drift and quality per window as their ``to_dict()`` gave them) and
every decision; this module turns them back into report objects and hands them to the HTML
writer of :mod:`modelyard.monitor.report_html`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import NotFound

if TYPE_CHECKING:
    from modelyard.store.monitor_entities import MonitorAction, MonitorReport
    from modelyard.workspace import Workspace


@dataclass(frozen=True)
class History:
    deployment: str
    reports: tuple[MonitorReport, ...]  # oldest first
    actions: tuple[MonitorAction, ...]  # oldest first

    def drift(self) -> list[Any]:
        """The newest window's drift report of each pass, oldest first."""
        from modelyard.monitor.drift import DriftReport

        return [DriftReport.from_dict(d) for d in self._newest("drift")]

    def quality(self) -> list[Any]:
        from modelyard.monitor.quality import QualityReport

        return [QualityReport.from_dict(d) for d in self._newest("quality")]

    def availability(self) -> list[Any]:
        from modelyard.monitor.availability import AvailabilityReport

        return [
            AvailabilityReport.from_dict(r.details["availability"])
            for r in self.reports
            if r.details.get("availability")
        ]

    def _newest(self, key: str) -> list[dict[str, Any]]:
        out = []
        for report in self.reports:
            docs = report.details.get(key) or []
            if docs and docs[-1] is not None:
                out.append(docs[-1])
        return out


def history(ws: Workspace, deployment: str, *, limit: int = 50) -> History:
    ws.store.deployments.get(deployment)  # NotFound for a typo, before anything else
    reports = ws.store.monitoring.reports(deployment, limit=limit)
    if not reports:
        raise NotFound(
            f"no monitor reports for {deployment!r} yet; run 'modelyard monitor check {deployment}'"
        )
    actions = ws.store.monitoring.actions(deployment, limit=limit)
    return History(deployment, tuple(reversed(reports)), tuple(reversed(actions)))


def write_deployment_report(
    ws: Workspace, deployment: str, output: Path, *, limit: int = 50
) -> Path:
    """Write the self-contained HTML report of ``deployment``'s last ``limit`` passes."""
    from modelyard.monitor.report_html import write_html_report

    past = history(ws, deployment, limit=limit)
    decisions = [
        {
            "at": a.started_at.isoformat(),
            "policy": a.policy,
            "action": a.action,
            "status": a.status,
            "reason": a.reason,
            "detail": a.detail,
        }
        for a in past.actions
    ]
    availability = past.availability()
    return write_html_report(
        output,
        title=f"modelyard monitor: {deployment}",
        drift=past.drift(),
        quality=past.quality(),
        availability=availability,
        decisions=decisions,
    )
