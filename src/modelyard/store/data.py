"""Dataset and dataset-version rows."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from modelyard import validation
from modelyard.errors import NotFound
from modelyard.store.data_entities import Dataset, DatasetVersion
from modelyard.store.data_schema import DatasetRow, DatasetVersionRow
from modelyard.store.database import Database
from modelyard.store.schema import utcnow


def _version(row: DatasetVersionRow, name: str) -> DatasetVersion:
    return DatasetVersion(
        id=row.id,
        name=name,
        version=row.version,
        digest=row.digest,
        kind=row.kind,
        format=row.format,
        size=row.size,
        file_count=row.file_count,
        schema=row.schema_,
        profile=row.profile,
        source=row.source,
        description=row.description,
        created_at=row.created_at,
        created_by=row.created_by,
    )


class DatasetRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add_version(
        self,
        name: str,
        *,
        digest: str,
        kind: str,
        format: str,
        size: int,
        file_count: int,
        schema: dict[str, Any] | None,
        profile: dict[str, Any] | None,
        source: str | None,
        description: str | None = None,
        created_by: str | None = None,
    ) -> tuple[DatasetVersion, bool]:
        """Version N+1 of ``name`` for ``digest``, or the existing version with that digest.

        Returns ``(version, created)``. Concurrent adds race on the unique constraints; the
        loser retries, so two processes never get the same number and identical content never
        gets two numbers.
        """
        validation.name(name, "dataset name")

        def attempt(s: Session) -> tuple[DatasetVersion, bool]:
            dataset = s.scalar(select(DatasetRow).where(DatasetRow.name == name))
            if dataset is None:
                dataset = DatasetRow(name=name, created_at=utcnow())
                s.add(dataset)
                s.flush()
            existing = s.scalar(
                select(DatasetVersionRow).where(
                    DatasetVersionRow.dataset_id == dataset.id,
                    DatasetVersionRow.digest == digest,
                )
            )
            if existing is not None:
                return _version(existing, name), False
            latest = s.scalar(
                select(func.max(DatasetVersionRow.version)).where(
                    DatasetVersionRow.dataset_id == dataset.id
                )
            )
            row = DatasetVersionRow(
                dataset_id=dataset.id,
                version=(latest or 0) + 1,
                digest=digest,
                kind=kind,
                format=format,
                size=size,
                file_count=file_count,
                schema_=schema,
                profile=profile,
                source=source,
                description=description,
                created_at=utcnow(),
                created_by=created_by,
            )
            s.add(row)
            s.flush()
            return _version(row, name), True

        return self._db.retrying(f"allocate a version of dataset {name!r}", attempt)

    def get(self, name: str) -> Dataset:
        with self._db.session() as s:
            row = s.scalar(select(DatasetRow).where(DatasetRow.name == name))
            if row is None:
                raise NotFound(f"no dataset named {name!r}")
            latest = s.scalar(
                select(func.max(DatasetVersionRow.version)).where(
                    DatasetVersionRow.dataset_id == row.id
                )
            )
            return Dataset(row.id, row.name, row.description, row.created_at, latest)

    def all(self) -> list[Dataset]:
        latest = (
            select(DatasetVersionRow.dataset_id, func.max(DatasetVersionRow.version).label("v"))
            .group_by(DatasetVersionRow.dataset_id)
            .subquery()
        )
        with self._db.session() as s:
            rows = s.execute(
                select(DatasetRow, latest.c.v)
                .outerjoin(latest, latest.c.dataset_id == DatasetRow.id)
                .order_by(DatasetRow.name)
            )
            return [Dataset(d.id, d.name, d.description, d.created_at, v) for d, v in rows]

    def versions(self, name: str) -> list[DatasetVersion]:
        dataset = self.get(name)
        with self._db.session() as s:
            rows = s.scalars(
                select(DatasetVersionRow)
                .where(DatasetVersionRow.dataset_id == dataset.id)
                .order_by(DatasetVersionRow.version)
            )
            return [_version(r, name) for r in rows]

    def get_version(
        self, name: str, version: int | None = None, *, digest: str | None = None
    ) -> DatasetVersion:
        """A version by number, by digest, or the latest when neither is given."""
        dataset = self.get(name)
        with self._db.session() as s:
            query = select(DatasetVersionRow).where(DatasetVersionRow.dataset_id == dataset.id)
            if version is not None:
                query = query.where(DatasetVersionRow.version == version)
            elif digest is not None:
                query = query.where(DatasetVersionRow.digest == digest)
            else:
                query = query.order_by(DatasetVersionRow.version.desc()).limit(1)
            row = s.scalar(query)
            if row is None:
                what = (
                    f"version {version}"
                    if version is not None
                    else f"digest {digest}"
                    if digest is not None
                    else "versions"
                )
                hint = (
                    f" (latest is {name}@{dataset.latest_version})"
                    if dataset.latest_version
                    else ""
                )
                raise NotFound(f"dataset {name!r} has no {what}{hint}")
            return _version(row, name)

    def get_version_by_id(self, version_id: int) -> DatasetVersion:
        with self._db.session() as s:
            row = s.get(DatasetVersionRow, version_id)
            if row is None:
                raise NotFound(f"no dataset version with id {version_id}")
            name = s.scalar(select(DatasetRow.name).where(DatasetRow.id == row.dataset_id))
            assert name is not None
            return _version(row, name)
