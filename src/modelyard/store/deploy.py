"""Deployments, their revisions (one per rollout) and events, as frozen values.

The deployer writes the revision *before* it touches a target ("pending"), then its outcome, so
a crash mid-rollout leaves a record saying so; ``current`` moves only when a rollout succeeded.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from modelyard.errors import AlreadyExists, NotFound
from modelyard.store.database import Database
from modelyard.store.deploy_entities import (
    DEPLOYING,
    FAILED,
    REV_ACTIVE,
    REV_FAILED,
    REV_PENDING,
    REV_SUPERSEDED,
    RUNNING,
    Deployment,
    DeploymentEvent,
    DeploymentRevision,
)
from modelyard.store.deploy_schema import DeploymentEventRow, DeploymentRevisionRow, DeploymentRow
from modelyard.store.schema import utcnow


def _revision(row: DeploymentRevisionRow) -> DeploymentRevision:
    return DeploymentRevision(
        revision=row.revision,
        model_name=row.model_name,
        model_version=row.model_version,
        image_ref=row.image_ref,
        image_digest=row.image_digest,
        replicas=row.replicas,
        status=row.status,
        detail=row.detail,
        created_at=row.created_at,
    )


class DeploymentRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def _row(self, s: Session, name: str) -> DeploymentRow:
        row = s.scalars(select(DeploymentRow).where(DeploymentRow.name == name)).first()
        if row is None:
            raise NotFound(f"no deployment named {name!r} (see 'modelyard deployments list')")
        return row

    def _value(self, s: Session, row: DeploymentRow) -> Deployment:
        revs = s.scalars(
            select(DeploymentRevisionRow)
            .where(DeploymentRevisionRow.deployment_id == row.id)
            .order_by(DeploymentRevisionRow.revision)
        )
        return Deployment(
            id=row.id,
            name=row.name,
            target=row.target,
            status=row.status,
            revision=row.revision,
            port=row.port,
            replicas=row.replicas,
            config=dict(row.config or {}),
            created_at=row.created_at,
            updated_at=row.updated_at,
            revisions=tuple(_revision(r) for r in revs),
        )

    def create(
        self, name: str, target: str, *, port: int | None, replicas: int, config: dict[str, Any]
    ) -> Deployment:
        now = utcnow()
        try:
            with self._db.session() as s:
                row = DeploymentRow(
                    name=name,
                    target=target,
                    status=DEPLOYING,
                    revision=None,
                    port=port,
                    replicas=replicas,
                    config=config,
                    created_at=now,
                    updated_at=now,
                )
                s.add(row)
                s.flush()
                return self._value(s, row)
        except IntegrityError:
            raise AlreadyExists(f"a deployment named {name!r} already exists") from None

    def find(self, name: str) -> Deployment | None:
        with self._db.session() as s:
            row = s.scalars(select(DeploymentRow).where(DeploymentRow.name == name)).first()
            return None if row is None else self._value(s, row)

    def get(self, name: str) -> Deployment:
        with self._db.session() as s:
            return self._value(s, self._row(s, name))

    def all(self) -> list[Deployment]:
        with self._db.session() as s:
            rows = s.scalars(select(DeploymentRow).order_by(DeploymentRow.name))
            return [self._value(s, r) for r in rows]

    def update(
        self,
        name: str,
        *,
        status: str | None = None,
        port: int | None = None,
        replicas: int | None = None,
        config: dict[str, Any] | None = None,
    ) -> Deployment:
        with self._db.session() as s:
            row = self._row(s, name)
            if status is not None:
                row.status = status
            if port is not None:
                row.port = port
            if replicas is not None:
                row.replicas = replicas
            if config is not None:
                row.config = {**(row.config or {}), **config}
            row.updated_at = utcnow()
            return self._value(s, row)

    def add_revision(
        self,
        name: str,
        *,
        model_name: str,
        model_version: int,
        image_ref: str | None,
        image_digest: str | None,
        replicas: int,
    ) -> DeploymentRevision:
        """A new pending revision numbered after the highest one."""
        with self._db.session() as s:
            row = self._row(s, name)
            last = s.scalars(
                select(DeploymentRevisionRow.revision)
                .where(DeploymentRevisionRow.deployment_id == row.id)
                .order_by(DeploymentRevisionRow.revision.desc())
            ).first()
            rev = DeploymentRevisionRow(
                deployment_id=row.id,
                revision=(last or 0) + 1,
                model_name=model_name,
                model_version=model_version,
                image_ref=image_ref,
                image_digest=image_digest,
                replicas=replicas,
                status=REV_PENDING,
                detail=None,
                created_at=utcnow(),
            )
            s.add(rev)
            row.status = DEPLOYING
            row.updated_at = utcnow()
            s.flush()
            return _revision(rev)

    def finish_revision(
        self, name: str, revision: int, *, ok: bool, detail: str | None = None
    ) -> Deployment:
        """Record a rollout's outcome: on success the revision becomes current (the previous
        one superseded); on failure the deployment is marked failed and keeps its current."""
        with self._db.session() as s:
            row = self._row(s, name)
            revs = {
                r.revision: r
                for r in s.scalars(
                    select(DeploymentRevisionRow).where(
                        DeploymentRevisionRow.deployment_id == row.id
                    )
                )
            }
            if revision not in revs:
                raise NotFound(f"deployment {name!r} has no revision {revision}")
            rev = revs[revision]
            rev.detail = detail
            if ok:
                if row.revision is not None and row.revision in revs:
                    revs[row.revision].status = REV_SUPERSEDED
                rev.status = REV_ACTIVE
                row.revision = revision
                row.replicas = rev.replicas
                row.status = RUNNING
            else:
                rev.status = REV_FAILED
                row.status = FAILED
            row.updated_at = utcnow()
            return self._value(s, row)

    def add_event(self, name: str, kind: str, message: str) -> None:
        with self._db.session() as s:
            row = self._row(s, name)
            s.add(DeploymentEventRow(deployment_id=row.id, at=utcnow(), kind=kind, message=message))

    def events(self, name: str, limit: int = 50) -> list[DeploymentEvent]:
        with self._db.session() as s:
            row = self._row(s, name)
            rows = s.scalars(
                select(DeploymentEventRow)
                .where(DeploymentEventRow.deployment_id == row.id)
                .order_by(DeploymentEventRow.id.desc())
                .limit(limit)
            )
            return [DeploymentEvent(r.at, r.kind, r.message) for r in rows][::-1]
