"""The monitor's records: reports, the actions they caused, and leases.

A lease is a row named after what it guards (``retrain:churn``) with a holder and an expiry.
Taking it is one atomic statement on both SQLite and PostgreSQL: an insert that does nothing
when the row exists, then an update that succeeds only when the existing lease has expired (or
is already ours). Two monitors racing for the same model therefore get exactly one winner, and
a monitor killed while holding a lease blocks the model only until the expiry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, or_, select, update

from modelyard.errors import NotFound
from modelyard.store.database import Database
from modelyard.store.monitor_entities import Lease, MonitorAction, MonitorReport
from modelyard.store.monitor_schema import MonitorActionRow, MonitorLeaseRow, MonitorReportRow
from modelyard.store.schema import utcnow


def _report(row: MonitorReportRow) -> MonitorReport:
    return MonitorReport(
        id=row.id,
        deployment=row.deployment,
        model_name=row.model_name,
        model_version=row.model_version,
        window_end=row.window_end,
        metrics=dict(row.metrics or {}),
        details=dict(row.details or {}),
        fired=list(row.fired or []),
        created_at=row.created_at,
    )


def _action(row: MonitorActionRow) -> MonitorAction:
    return MonitorAction(
        id=row.id,
        report_id=row.report_id,
        deployment=row.deployment,
        policy=row.policy,
        action=row.action,
        status=row.status,
        reason=row.reason,
        detail=dict(row.detail or {}),
        started_at=row.started_at,
        ended_at=row.ended_at,
    )


class MonitoringRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    # reports ---------------------------------------------------------------------------
    def add_report(
        self,
        deployment: str,
        *,
        model_name: str | None,
        model_version: int | None,
        window_end: datetime | None,
        metrics: Mapping[str, Any],
        details: Mapping[str, Any],
        fired: Sequence[Mapping[str, Any]] = (),
    ) -> MonitorReport:
        row = MonitorReportRow(
            deployment=deployment,
            model_name=model_name,
            model_version=model_version,
            window_end=window_end,
            metrics=dict(metrics),
            details=dict(details),
            fired=[dict(f) for f in fired],
            created_at=utcnow(),
        )
        with self._db.session() as s:
            s.add(row)
            s.flush()
            return _report(row)

    def set_fired(self, report_id: int, fired: Sequence[Mapping[str, Any]]) -> None:
        with self._db.session() as s:
            s.execute(
                update(MonitorReportRow)
                .where(MonitorReportRow.id == report_id)
                .values(fired=[dict(f) for f in fired])
            )

    def get_report(self, report_id: int) -> MonitorReport:
        with self._db.session() as s:
            row = s.get(MonitorReportRow, report_id)
            if row is None:
                raise NotFound(f"no monitor report {report_id}")
            return _report(row)

    def reports(self, deployment: str | None = None, *, limit: int = 50) -> list[MonitorReport]:
        """Newest first."""
        query = select(MonitorReportRow).order_by(MonitorReportRow.id.desc()).limit(limit)
        if deployment is not None:
            query = query.where(MonitorReportRow.deployment == deployment)
        with self._db.session() as s:
            return [_report(r) for r in s.scalars(query)]

    # actions ---------------------------------------------------------------------------
    def add_action(
        self,
        *,
        report_id: int | None,
        deployment: str,
        policy: str,
        action: str,
        status: str,
        reason: str | None = None,
        detail: Mapping[str, Any] | None = None,
        finished: bool = False,
    ) -> MonitorAction:
        now = utcnow()
        row = MonitorActionRow(
            report_id=report_id,
            deployment=deployment,
            policy=policy,
            action=action,
            status=status,
            reason=reason,
            detail=dict(detail or {}),
            started_at=now,
            ended_at=now if finished else None,
        )
        with self._db.session() as s:
            s.add(row)
            s.flush()
            return _action(row)

    def finish_action(
        self,
        action_id: int,
        status: str,
        *,
        reason: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> MonitorAction:
        with self._db.session() as s:
            row = s.get(MonitorActionRow, action_id)
            if row is None:
                raise NotFound(f"no monitor action {action_id}")
            row.status = status
            row.reason = reason
            row.detail = {**(row.detail or {}), **dict(detail or {})}
            row.ended_at = utcnow()
            s.flush()
            return _action(row)

    def actions(
        self,
        deployment: str | None = None,
        *,
        policy: str | None = None,
        action: str | None = None,
        limit: int = 50,
    ) -> list[MonitorAction]:
        """Newest first."""
        query = select(MonitorActionRow).order_by(MonitorActionRow.id.desc()).limit(limit)
        if deployment is not None:
            query = query.where(MonitorActionRow.deployment == deployment)
        if policy is not None:
            query = query.where(MonitorActionRow.policy == policy)
        if action is not None:
            query = query.where(MonitorActionRow.action == action)
        with self._db.session() as s:
            return [_action(r) for r in s.scalars(query)]

    # leases ----------------------------------------------------------------------------
    def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        """Take ``name`` for ``holder`` unless someone else holds an unexpired lease on it."""
        now = utcnow()
        expires = now + timedelta(seconds=ttl_seconds)
        insert = (
            self._db.insert(MonitorLeaseRow)
            .values(name=name, holder=holder, acquired_at=now, expires_at=expires)
            .on_conflict_do_nothing()
        )
        with self._db.session() as s:
            if s.execute(insert).rowcount == 1:  # type: ignore[attr-defined]
                return True
        take = (
            update(MonitorLeaseRow)
            .where(MonitorLeaseRow.name == name)
            .where(or_(MonitorLeaseRow.expires_at < now, MonitorLeaseRow.holder == holder))
            .values(holder=holder, acquired_at=now, expires_at=expires)
        )
        with self._db.session() as s:
            return bool(s.execute(take).rowcount == 1)  # type: ignore[attr-defined]

    def renew_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        """Push the expiry out; False when the lease is no longer ours."""
        expires = utcnow() + timedelta(seconds=ttl_seconds)
        stmt = (
            update(MonitorLeaseRow)
            .where(MonitorLeaseRow.name == name, MonitorLeaseRow.holder == holder)
            .values(expires_at=expires)
        )
        with self._db.session() as s:
            return bool(s.execute(stmt).rowcount == 1)  # type: ignore[attr-defined]

    def release_lease(self, name: str, holder: str) -> bool:
        """Drop the lease if ``holder`` still has it (never someone else's)."""
        stmt = delete(MonitorLeaseRow).where(
            MonitorLeaseRow.name == name, MonitorLeaseRow.holder == holder
        )
        with self._db.session() as s:
            return bool(s.execute(stmt).rowcount == 1)  # type: ignore[attr-defined]

    def leases(self) -> list[Lease]:
        with self._db.session() as s:
            rows = s.scalars(select(MonitorLeaseRow).order_by(MonitorLeaseRow.name))
            return [Lease(r.name, r.holder, r.acquired_at, r.expires_at) for r in rows]
