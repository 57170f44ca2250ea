"""Tables of the monitor stage (same declarative Base as schema.py).

``monitor_reports`` keeps every pass of the monitor (its measurements and which policies fired),
``monitor_actions`` every decision taken because of one (alerts sent, retrains started and how
they ended, and why), and ``monitor_leases`` the short-lived locks that keep two monitors from
retraining the same model at once: a row per lock with its holder and an expiry, so a monitor
that died cannot hold a model forever.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.store.schema import Base, BigId, Json, UTCDateTime


class MonitorReportRow(Base):
    __tablename__ = "monitor_reports"
    __table_args__ = (Index("ix_monitor_reports_deployment", "deployment", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    deployment: Mapped[str] = mapped_column(String(128))
    model_name: Mapped[str | None] = mapped_column(String(128))
    model_version: Mapped[int | None] = mapped_column(Integer)
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime())
    # metric name -> value of the newest window, and the series of recent windows
    metrics: Mapped[Any | None] = mapped_column(Json)
    # the full drift / quality / availability reports as their to_dict() gave them
    details: Mapped[Any | None] = mapped_column(Json)
    fired: Mapped[Any | None] = mapped_column(Json)  # [{"policy", "action", "reasons"}]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


class MonitorActionRow(Base):
    __tablename__ = "monitor_actions"
    __table_args__ = (Index("ix_monitor_actions_policy", "deployment", "policy", "id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    report_id: Mapped[int | None] = mapped_column(
        ForeignKey("monitor_reports.id", ondelete="SET NULL")
    )
    deployment: Mapped[str] = mapped_column(String(128))
    policy: Mapped[str] = mapped_column(String(128))
    action: Mapped[str] = mapped_column(String(16))
    # started | sent | failed | promoted | champion_kept | skipped
    status: Mapped[str] = mapped_column(String(16))
    reason: Mapped[str | None] = mapped_column(Text)
    detail: Mapped[Any | None] = mapped_column(Json)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class MonitorLeaseRow(Base):
    __tablename__ = "monitor_leases"
    name: Mapped[str] = mapped_column(String(256), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    acquired_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


__all__ = ["Base", "MonitorActionRow", "MonitorLeaseRow", "MonitorReportRow"]
