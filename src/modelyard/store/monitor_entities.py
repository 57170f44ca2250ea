"""Values of the monitor stage that leave the store: reports, the actions they caused, and
leases, as frozen dataclasses."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class MonitorReport:
    id: int
    deployment: str
    model_name: str | None
    model_version: int | None
    window_end: datetime | None
    metrics: dict[str, Any]
    details: dict[str, Any]
    fired: list[dict[str, Any]]
    created_at: datetime


@dataclass(frozen=True)
class MonitorAction:
    id: int
    report_id: int | None
    deployment: str
    policy: str
    action: str
    status: str
    reason: str | None
    detail: dict[str, Any]
    started_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True)
class Lease:
    name: str
    holder: str
    acquired_at: datetime
    expires_at: datetime
