"""Registered models, their versions, aliases (with history), tags and approvals."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session

from modelyard import validation
from modelyard.errors import AlreadyExists, InvalidParameter, NotFound
from modelyard.store.database import Database, is_unique_violation
from modelyard.store.models_entities import (
    MODEL_ACTIVE,
    MODEL_STATUSES,
    AliasMove,
    Approval,
    ModelVersion,
    RegisteredModel,
)
from modelyard.store.models_schema import (
    ModelAliasHistoryRow,
    ModelAliasRow,
    ModelApprovalRow,
    ModelVersionRow,
    ModelVersionTagRow,
    RegisteredModelRow,
)
from modelyard.store.schema import utcnow

T = TypeVar("T")


def _version(
    row: ModelVersionRow, name: str, tags: dict[str, str], aliases: Sequence[str]
) -> ModelVersion:
    return ModelVersion(
        id=row.id,
        name=name,
        version=row.version,
        digest=row.digest,
        flavor=row.flavor,
        signature=row.signature,
        requirements=row.requirements,
        run_id=row.run_id,
        source=row.source,
        description=row.description,
        status=row.status,
        trusted_pickle=row.trusted_pickle,
        trusted_by=row.trusted_by,
        created_at=row.created_at,
        created_by=row.created_by,
        image_id=row.image_id,
        image_digest=row.image_digest,
        image_size=row.image_size,
        image_ref=row.image_ref,
        tags=dict(tags),
        aliases=tuple(sorted(aliases)),
        trusted_digest=row.trusted_digest,
        trusted_at=row.trusted_at,
    )


def _move(row: ModelAliasHistoryRow, name: str) -> AliasMove:
    return AliasMove(
        id=row.id,
        name=name,
        alias=row.alias,
        from_version=row.from_version,
        to_version=row.to_version,
        actor=row.actor,
        moved_at=row.moved_at,
        reason=row.reason,
        forced=row.forced,
        failed_checks=row.failed_checks,
    )


class ModelRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- helpers -------------------------------------------------------------------------------
    def _retrying(self, what: str, fn: Callable[[Session], T]) -> T:
        return self._db.retrying(what, fn)

    @staticmethod
    def _model_row(s: Session, name: str) -> RegisteredModelRow:
        row = s.scalar(select(RegisteredModelRow).where(RegisteredModelRow.name == name))
        if row is None:
            raise NotFound(f"no registered model named {name!r}")
        return row

    @staticmethod
    def _version_row(s: Session, model: RegisteredModelRow, version: int) -> ModelVersionRow:
        row = s.scalar(
            select(ModelVersionRow).where(
                ModelVersionRow.model_id == model.id, ModelVersionRow.version == version
            )
        )
        if row is None:
            latest = s.scalar(
                select(func.max(ModelVersionRow.version)).where(
                    ModelVersionRow.model_id == model.id
                )
            )
            hint = f" (latest is {model.name}@{latest})" if latest else ""
            raise NotFound(f"model {model.name!r} has no version {version}{hint}")
        return row

    def _hydrate(
        self, s: Session, rows: Sequence[ModelVersionRow], name: str
    ) -> list[ModelVersion]:
        if not rows:
            return []
        ids = [r.id for r in rows]
        tags: dict[int, dict[str, str]] = {i: {} for i in ids}
        aliases: dict[int, list[str]] = {i: [] for i in ids}
        for vid, k, v in s.execute(
            select(
                ModelVersionTagRow.model_version_id,
                ModelVersionTagRow.key,
                ModelVersionTagRow.value,
            ).where(ModelVersionTagRow.model_version_id.in_(ids))
        ):
            tags[vid][k] = v
        for vid, alias in s.execute(
            select(ModelAliasRow.model_version_id, ModelAliasRow.alias).where(
                ModelAliasRow.model_version_id.in_(ids)
            )
        ):
            aliases[vid].append(alias)
        return [_version(r, name, tags[r.id], aliases[r.id]) for r in rows]

    def _model(self, s: Session, row: RegisteredModelRow) -> RegisteredModel:
        latest = s.scalar(
            select(func.max(ModelVersionRow.version)).where(ModelVersionRow.model_id == row.id)
        )
        aliases = {
            alias: version
            for alias, version in s.execute(
                select(ModelAliasRow.alias, ModelVersionRow.version)
                .join(ModelVersionRow, ModelVersionRow.id == ModelAliasRow.model_version_id)
                .where(ModelAliasRow.model_id == row.id)
                .order_by(ModelAliasRow.alias)
            )
        }
        return RegisteredModel(
            id=row.id,
            name=row.name,
            description=row.description,
            gate=row.gate,
            created_at=row.created_at,
            created_by=row.created_by,
            latest_version=latest,
            aliases=aliases,
        )

    # -- versions ------------------------------------------------------------------------------
    def add_version(
        self,
        name: str,
        *,
        digest: str,
        flavor: str,
        signature: dict[str, Any] | None,
        requirements: dict[str, str] | None,
        run_id: str | None,
        source: str | None,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        trusted_pickle: bool = False,
        trusted_by: str | None = None,
        created_by: str | None = None,
    ) -> ModelVersion:
        """Version N+1 of ``name`` (the model is created on its first version).

        Content that ``run_id`` already registered as an active version of ``name`` (trusted,
        or trust not asked for) returns that version instead: one run, one artifact, one
        version. Concurrent registrations race on the unique constraints (the version number,
        and (model, run, digest, trust) among active versions); the loser retries and finds the
        winner's row, so two processes never get the same number nor two identical versions.
        """
        validation.name(name, "model name")

        def attempt(s: Session) -> ModelVersion:
            model = s.scalar(select(RegisteredModelRow).where(RegisteredModelRow.name == name))
            if model is None:
                model = RegisteredModelRow(name=name, created_at=utcnow(), created_by=created_by)
                s.add(model)
                s.flush()
            elif run_id is not None:
                same = s.scalars(
                    select(ModelVersionRow)
                    .where(
                        ModelVersionRow.model_id == model.id,
                        ModelVersionRow.run_id == run_id,
                        ModelVersionRow.digest == digest,
                        ModelVersionRow.status == MODEL_ACTIVE,
                    )
                    .order_by(ModelVersionRow.trusted_pickle.desc(), ModelVersionRow.version)
                ).first()
                if same is not None and (same.trusted_pickle or not trusted_pickle):
                    return self._hydrate(s, [same], name)[0]
            latest = s.scalar(
                select(func.max(ModelVersionRow.version)).where(
                    ModelVersionRow.model_id == model.id
                )
            )
            row = ModelVersionRow(
                model_id=model.id,
                version=(latest or 0) + 1,
                digest=digest,
                flavor=flavor,
                signature=signature,
                requirements=requirements,
                run_id=run_id,
                source=source,
                description=description,
                status=MODEL_ACTIVE,
                trusted_pickle=trusted_pickle,
                trusted_by=trusted_by if trusted_pickle else None,
                trusted_digest=digest if trusted_pickle else None,
                trusted_at=utcnow() if trusted_pickle else None,
                created_at=utcnow(),
                created_by=created_by,
            )
            s.add(row)
            s.flush()
            if tags:
                s.add_all(
                    ModelVersionTagRow(model_version_id=row.id, key=k, value=v)
                    for k, v in tags.items()
                )
                s.flush()
            return _version(row, name, tags or {}, ())

        return self._retrying(f"allocate a version of model {name!r}", attempt)

    def get_version(
        self,
        name: str,
        version: int | None = None,
        *,
        digest: str | None = None,
        alias: str | None = None,
    ) -> ModelVersion:
        """A version by number, digest (newest with it) or alias; with none of them, the
        latest *active* version: an archived version is never picked implicitly."""
        with self._db.session() as s:
            model = self._model_row(s, name)
            if version is not None:
                row = self._version_row(s, model, version)
            elif alias is not None:
                found = s.scalar(
                    select(ModelVersionRow)
                    .join(ModelAliasRow, ModelAliasRow.model_version_id == ModelVersionRow.id)
                    .where(ModelAliasRow.model_id == model.id, ModelAliasRow.alias == alias)
                )
                if found is None:
                    known = sorted(
                        s.scalars(
                            select(ModelAliasRow.alias).where(ModelAliasRow.model_id == model.id)
                        )
                    )
                    hint = f" (aliases: {', '.join(known)})" if known else " (it has no aliases)"
                    raise NotFound(f"model {name!r} has no alias {alias!r}{hint}")
                row = found
            else:
                query = select(ModelVersionRow).where(ModelVersionRow.model_id == model.id)
                if digest is not None:
                    query = query.where(ModelVersionRow.digest == digest)
                else:
                    query = query.where(ModelVersionRow.status == MODEL_ACTIVE)
                found = s.scalar(query.order_by(ModelVersionRow.version.desc()).limit(1))
                if found is None:
                    what = f"a version with digest {digest}" if digest else "active versions"
                    raise NotFound(f"model {name!r} has no {what}")
                row = found
            return self._hydrate(s, [row], name)[0]

    def get_version_by_id(self, version_id: int) -> ModelVersion:
        with self._db.session() as s:
            row = s.get(ModelVersionRow, version_id)
            if row is None:
                raise NotFound(f"no model version with id {version_id}")
            name = s.scalar(
                select(RegisteredModelRow.name).where(RegisteredModelRow.id == row.model_id)
            )
            assert name is not None
            return self._hydrate(s, [row], name)[0]

    def versions(self, name: str) -> list[ModelVersion]:
        with self._db.session() as s:
            model = self._model_row(s, name)
            rows = list(
                s.scalars(
                    select(ModelVersionRow)
                    .where(ModelVersionRow.model_id == model.id)
                    .order_by(ModelVersionRow.version)
                )
            )
            return self._hydrate(s, rows, name)

    def versions_of_run(self, run_id: str) -> list[ModelVersion]:
        """Every version registered from ``run_id`` (for lineage and ``runs show``)."""
        with self._db.session() as s:
            found = list(
                s.execute(
                    select(ModelVersionRow, RegisteredModelRow.name)
                    .join(RegisteredModelRow, RegisteredModelRow.id == ModelVersionRow.model_id)
                    .where(ModelVersionRow.run_id == run_id)
                    .order_by(RegisteredModelRow.name, ModelVersionRow.version)
                )
            )
            return [self._hydrate(s, [row], name)[0] for row, name in found]

    def set_status(self, name: str, version: int, status: str) -> ModelVersion:
        if status not in MODEL_STATUSES:
            raise InvalidParameter(f"status must be one of {', '.join(MODEL_STATUSES)}")
        from sqlalchemy.exc import IntegrityError

        try:
            with self._db.session() as s:
                row = self._version_row(s, self._model_row(s, name), version)
                row.status = status
                s.flush()
                return self._hydrate(s, [row], name)[0]
        except IntegrityError as exc:
            if not is_unique_violation(exc):
                raise
            raise AlreadyExists(
                f"{name}@{version} cannot be {status}: another active version of {name!r} holds "
                "the same content from the same run; archive that one first"
            ) from None

    def set_description(self, name: str, version: int | None, description: str | None) -> None:
        """Describe a version, or the model itself when ``version`` is None."""
        with self._db.session() as s:
            model = self._model_row(s, name)
            if version is None:
                model.description = description
            else:
                self._version_row(s, model, version).description = description

    def set_tags(self, name: str, version: int, tags: dict[str, str]) -> None:
        if not tags:
            return
        with self._db.session() as s:
            row = self._version_row(s, self._model_row(s, name), version)
            stmt = self._db.insert(ModelVersionTagRow)
            stmt = stmt.on_conflict_do_update(
                index_elements=["model_version_id", "key"], set_={"value": stmt.excluded.value}
            )
            s.execute(
                stmt, [{"model_version_id": row.id, "key": k, "value": v} for k, v in tags.items()]
            )

    def remove_tags(self, name: str, version: int, keys: Sequence[str]) -> None:
        with self._db.session() as s:
            row = self._version_row(s, self._model_row(s, name), version)
            s.execute(
                delete(ModelVersionTagRow).where(
                    ModelVersionTagRow.model_version_id == row.id,
                    ModelVersionTagRow.key.in_(list(keys)),
                )
            )

    def set_trusted(self, name: str, version: int, trusted: bool, actor: str | None) -> None:
        with self._db.session() as s:
            row = self._version_row(s, self._model_row(s, name), version)
            row.trusted_pickle = trusted
            row.trusted_by = actor if trusted else None
            row.trusted_digest = row.digest if trusted else None
            row.trusted_at = utcnow() if trusted else None

    def set_image(
        self,
        name: str,
        version: int,
        *,
        image_id: str | None,
        image_digest: str | None,
        image_size: int | None,
        image_ref: str | None,
    ) -> None:
        """Record the image a version was built into (the packaging stage calls this)."""
        with self._db.session() as s:
            model = self._model_row(s, name)
            s.execute(
                update(ModelVersionRow)
                .where(ModelVersionRow.model_id == model.id, ModelVersionRow.version == version)
                .values(
                    image_id=image_id,
                    image_digest=image_digest,
                    image_size=image_size,
                    image_ref=image_ref,
                )
            )

    # -- models --------------------------------------------------------------------------------
    def get(self, name: str) -> RegisteredModel:
        with self._db.session() as s:
            return self._model(s, self._model_row(s, name))

    def all(self) -> list[RegisteredModel]:
        with self._db.session() as s:
            rows = list(s.scalars(select(RegisteredModelRow).order_by(RegisteredModelRow.name)))
            return [self._model(s, r) for r in rows]

    def set_gate(self, name: str, gate: dict[str, Any] | None) -> None:
        with self._db.session() as s:
            self._model_row(s, name).gate = gate

    # -- aliases -------------------------------------------------------------------------------
    def move_alias(
        self,
        name: str,
        alias: str,
        version: int | None,
        *,
        actor: str | None,
        reason: str | None = None,
        forced: bool = False,
        failed_checks: list[str] | None = None,
    ) -> AliasMove:
        """Point ``alias`` at ``version`` (None removes it) and append the move to the history,
        in one transaction: the history can never miss a move or record one that failed.
        ``forced`` says the caller may override failed checks; it is recorded only with the
        ``failed_checks`` it overrode (forcing past nothing is no override)."""
        validation.alias(alias)

        def attempt(s: Session) -> AliasMove:
            model = self._model_row(s, name)
            target = self._version_row(s, model, version) if version is not None else None
            current = s.scalar(
                select(ModelAliasRow)
                .where(ModelAliasRow.model_id == model.id, ModelAliasRow.alias == alias)
                .with_for_update()
            )
            from_version = None
            if current is not None:
                from_version = s.scalar(
                    select(ModelVersionRow.version).where(
                        ModelVersionRow.id == current.model_version_id
                    )
                )
            now = utcnow()
            if target is None:
                if current is None:
                    raise NotFound(f"model {name!r} has no alias {alias!r}")
                s.delete(current)
            elif current is None:
                s.add(
                    ModelAliasRow(
                        model_id=model.id,
                        alias=alias,
                        model_version_id=target.id,
                        updated_at=now,
                        updated_by=actor,
                    )
                )
            else:
                current.model_version_id = target.id
                current.updated_at = now
                current.updated_by = actor
            history = ModelAliasHistoryRow(
                model_id=model.id,
                alias=alias,
                from_version=from_version,
                to_version=version,
                actor=actor,
                moved_at=now,
                reason=reason,
                forced=bool(forced and failed_checks),
                failed_checks=list(failed_checks) if failed_checks else None,
            )
            s.add(history)
            s.flush()
            return _move(history, name)

        return self._retrying(f"move alias {alias!r} of model {name!r}", attempt)

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasMove]:
        with self._db.session() as s:
            model = self._model_row(s, name)
            query = select(ModelAliasHistoryRow).where(ModelAliasHistoryRow.model_id == model.id)
            if alias is not None:
                query = query.where(ModelAliasHistoryRow.alias == alias)
            rows = s.scalars(query.order_by(ModelAliasHistoryRow.id))
            return [_move(r, name) for r in rows]

    # -- approvals -----------------------------------------------------------------------------
    def add_approval(
        self, name: str, version: int, *, actor: str | None, comment: str | None = None
    ) -> Approval:
        with self._db.session() as s:
            row = self._version_row(s, self._model_row(s, name), version)
            approval = ModelApprovalRow(
                model_version_id=row.id, actor=actor, approved_at=utcnow(), comment=comment
            )
            s.add(approval)
            s.flush()
            return Approval(approval.id, name, version, actor, approval.approved_at, comment)

    def approvals(self, name: str, version: int) -> list[Approval]:
        with self._db.session() as s:
            row = self._version_row(s, self._model_row(s, name), version)
            rows = s.scalars(
                select(ModelApprovalRow)
                .where(ModelApprovalRow.model_version_id == row.id)
                .order_by(ModelApprovalRow.id)
            )
            return [Approval(a.id, name, version, a.actor, a.approved_at, a.comment) for a in rows]
