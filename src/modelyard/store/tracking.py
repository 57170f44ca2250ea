"""Tracked runs: their rows, parameters, tags, metrics and artifacts."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime

from sqlalchemy import func, select, update

from modelyard import validation
from modelyard.errors import InvalidReference, InvalidValue, NotFound, RunError
from modelyard.store.database import Database
from modelyard.store.schema import utcnow
from modelyard.store.tracking_entities import RUN_RUNNING, Metric, Run, RunArtifact
from modelyard.store.tracking_schema import (
    RunArtifactRow,
    RunMetricRow,
    RunParamRow,
    RunRow,
    RunTagRow,
)

MetricPoint = tuple[str, float, int, datetime]
_METRIC_COPY = 'COPY run_metrics (run_id, key, value, step, "timestamp") FROM STDIN'


def _run(
    row: RunRow,
    params: dict[str, str] | None = None,
    tags: dict[str, str] | None = None,
    metrics: dict[str, float] | None = None,
) -> Run:
    return Run(
        id=row.id,
        name=row.name,
        pipeline=row.pipeline,
        parent_id=row.parent_id,
        status=row.status,
        start_time=row.start_time,
        end_time=row.end_time,
        heartbeat_at=row.heartbeat_at,
        error=row.error,
        git_commit=row.git_commit,
        git_dirty=row.git_dirty,
        git_diff_digest=row.git_diff_digest,
        python_version=row.python_version,
        environment_digest=row.environment_digest,
        host=row.host,
        user=row.user,
        params=params or {},
        tags=tags or {},
        latest_metrics=metrics or {},
    )


class RunRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(
        self,
        run_id: str,
        *,
        name: str | None = None,
        pipeline: str | None = None,
        parent_id: str | None = None,
        git_commit: str | None = None,
        git_dirty: bool | None = None,
        git_diff_digest: str | None = None,
        python_version: str | None = None,
        environment_digest: str | None = None,
        host: str | None = None,
        user: str | None = None,
    ) -> Run:
        for what, value in (("run name", name), ("pipeline name", pipeline)):
            if value is not None:
                validation.text(value, what)
        now = utcnow()
        row = RunRow(
            id=run_id,
            name=name,
            pipeline=pipeline,
            parent_id=parent_id,
            status=RUN_RUNNING,
            start_time=now,
            heartbeat_at=now,
            git_commit=git_commit,
            git_dirty=git_dirty,
            git_diff_digest=git_diff_digest,
            python_version=python_version,
            environment_digest=environment_digest,
            host=host,
            user=user,
        )
        with self._db.session() as s:
            s.add(row)
        return _run(row)

    def finish(self, run_id: str, status: str, error: str | None = None) -> None:
        now = utcnow()
        with self._db.session() as s:
            s.execute(
                update(RunRow)
                .where(RunRow.id == run_id)
                .values(status=status, error=error, end_time=now, heartbeat_at=now)
            )

    def heartbeat(self, run_id: str) -> None:
        with self._db.session() as s:
            s.execute(update(RunRow).where(RunRow.id == run_id).values(heartbeat_at=utcnow()))

    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        """Parameters are write-once, as in every tracker users know: re-logging the same value
        is fine, changing one is an error (a run describes one configuration)."""
        if not params:
            return
        params = {
            validation.text(k, "parameter name"): validation.param_value(v)
            for k, v in params.items()
        }
        with self._db.session() as s:
            existing = {
                k: v
                for k, v in s.execute(
                    select(RunParamRow.key, RunParamRow.value).where(
                        RunParamRow.run_id == run_id, RunParamRow.key.in_(list(params))
                    )
                )
            }
            for key, value in params.items():
                if key in existing and existing[key] != value:
                    raise RunError(
                        f"parameter {key!r} of run {run_id} is already {existing[key]!r}; "
                        f"parameters cannot change (got {value!r})"
                    )
            new = [
                {"run_id": run_id, "key": k, "value": v}
                for k, v in params.items()
                if k not in existing
            ]
            if new:
                s.execute(self._db.insert(RunParamRow), new)

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None:
        if not tags:
            return
        stmt = self._db.insert(RunTagRow)
        stmt = stmt.on_conflict_do_update(
            index_elements=["run_id", "key"], set_={"value": stmt.excluded.value}
        )
        with self._db.session() as s:
            s.execute(stmt, [{"run_id": run_id, "key": k, "value": v} for k, v in tags.items()])

    def log_metrics(self, run_id: str, points: Sequence[MetricPoint]) -> None:
        if not points:
            return
        for key, value, step, _ in points:
            validation.text(key, "metric name")
            validation.metric_value(key, value)
            validation.step(step)
        with self._db.session() as s:
            if self._db.dialect == "postgresql":
                # psycopg runs an executemany as one statement per row; COPY streams the whole
                # batch in one command, inside the session's transaction (~10x faster).
                raw = s.connection().connection.driver_connection
                assert raw is not None
                with raw.cursor() as cur, cur.copy(_METRIC_COPY) as copy:
                    for point in points:
                        if point[3].tzinfo is None:  # COPY bypasses UTCDateTime's check
                            raise InvalidValue("naive datetime passed to the store")
                        copy.write_row((run_id, *point))
            else:
                rows = [
                    {"run_id": run_id, "key": k, "value": v, "step": step, "timestamp": ts}
                    for k, v, step, ts in points
                ]
                s.execute(self._db.insert(RunMetricRow), rows)

    def add_artifact(self, run_id: str, name: str, digest: str, kind: str, size: int) -> None:
        stmt = self._db.insert(RunArtifactRow).values(
            run_id=run_id, name=name, digest=digest, kind=kind, size=size, created_at=utcnow()
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["run_id", "name"],
            set_={
                "digest": stmt.excluded.digest,
                "kind": stmt.excluded.kind,
                "size": stmt.excluded.size,
            },
        )
        with self._db.session() as s:
            s.execute(stmt)

    def resolve_id(self, id_or_prefix: str) -> str:
        """A full run id from a unique prefix of at least 4 characters, like git."""
        text = id_or_prefix.strip().lower()
        if not text or not all(c in "0123456789abcdef" for c in text):
            raise InvalidReference(f"{id_or_prefix!r} is not a run id (hex digits)")
        with self._db.session() as s:
            if len(text) == 32 and s.get(RunRow, text) is not None:
                return text
            if len(text) < 4:
                raise InvalidReference(f"run id prefix {id_or_prefix!r} is too short (need 4+)")
            ids = list(s.scalars(select(RunRow.id).where(RunRow.id.startswith(text)).limit(3)))
        if not ids:
            raise NotFound(f"no run {id_or_prefix!r}")
        if len(ids) > 1:
            raise InvalidReference(f"run id prefix {id_or_prefix!r} is ambiguous")
        return ids[0]

    def get(self, id_or_prefix: str) -> Run:
        run_id = self.resolve_id(id_or_prefix)
        with self._db.session() as s:
            row = s.get(RunRow, run_id)
            if row is None:
                raise NotFound(f"no run {id_or_prefix!r}")
            return self._hydrate(s, [row])[0]

    def search(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        status: str | None = None,
        pipeline: str | None = None,
        parent_id: str | None = None,
        heartbeat_before: datetime | None = None,
        heartbeat_since: datetime | None = None,
    ) -> list[Run]:
        """Newest first. ``heartbeat_before``/``heartbeat_since`` split running runs into lost
        and live ones in the query, so a limit still returns ``limit`` rows."""
        validation.page(limit, offset)
        query = select(RunRow).order_by(RunRow.start_time.desc(), RunRow.id)
        if heartbeat_before is not None:
            query = query.where(RunRow.heartbeat_at < heartbeat_before)
        if heartbeat_since is not None:
            query = query.where(RunRow.heartbeat_at >= heartbeat_since)
        if status is not None:
            query = query.where(RunRow.status == status)
        if pipeline is not None:
            query = query.where(RunRow.pipeline == pipeline)
        if parent_id is not None:
            query = query.where(RunRow.parent_id == parent_id)
        with self._db.session() as s:
            rows = list(s.scalars(query.limit(limit).offset(offset)))
            return self._hydrate(s, rows)

    def count(self) -> int:
        with self._db.session() as s:
            return int(s.scalar(select(func.count()).select_from(RunRow)) or 0)

    def metric_history(self, run_id: str, key: str | None = None) -> list[Metric]:
        query = select(RunMetricRow).where(RunMetricRow.run_id == run_id)
        if key is not None:
            query = query.where(RunMetricRow.key == key)
        with self._db.session() as s:
            rows = s.scalars(query.order_by(RunMetricRow.key, RunMetricRow.step, RunMetricRow.id))
            return [Metric(r.key, r.value, r.step, r.timestamp) for r in rows]

    def count_metrics(self, run_ids: Iterable[str] | None = None) -> int:
        query = select(func.count()).select_from(RunMetricRow)
        if run_ids is not None:
            query = query.where(RunMetricRow.run_id.in_(list(run_ids)))
        with self._db.session() as s:
            return int(s.scalar(query) or 0)

    def metric_counts(self, run_id: str) -> dict[str, int]:
        """How many points each metric of ``run_id`` has, counted by the database (a run can
        log millions of points; reading them all to count them is what this avoids)."""
        query = (
            select(RunMetricRow.key, func.count())
            .where(RunMetricRow.run_id == run_id)
            .group_by(RunMetricRow.key)
            .order_by(RunMetricRow.key)
        )
        with self._db.session() as s:
            return {key: int(n) for key, n in s.execute(query)}

    def artifacts(self, run_id: str) -> list[RunArtifact]:
        with self._db.session() as s:
            rows = s.scalars(
                select(RunArtifactRow)
                .where(RunArtifactRow.run_id == run_id)
                .order_by(RunArtifactRow.name)
            )
            return [RunArtifact(r.name, r.digest, r.kind, r.size, r.created_at) for r in rows]

    def artifact_names(self, digest: str) -> list[str]:
        """Every name under which any run logged the blob ``digest`` (for lineage labels)."""
        with self._db.session() as s:
            names = s.scalars(
                select(RunArtifactRow.name)
                .where(RunArtifactRow.digest == digest)
                .distinct()
                .order_by(RunArtifactRow.name)
            )
            return list(names)

    def _hydrate(self, s: object, rows: list[RunRow]) -> list[Run]:
        """Attach params, tags and each metric's last value with one query per kind."""
        from sqlalchemy.orm import Session

        assert isinstance(s, Session)
        if not rows:
            return []
        ids = [r.id for r in rows]
        params: dict[str, dict[str, str]] = {i: {} for i in ids}
        tags: dict[str, dict[str, str]] = {i: {} for i in ids}
        metrics: dict[str, dict[str, float]] = {i: {} for i in ids}
        for run_id, k, v in s.execute(
            select(RunParamRow.run_id, RunParamRow.key, RunParamRow.value).where(
                RunParamRow.run_id.in_(ids)
            )
        ):
            params[run_id][k] = v
        for run_id, k, v in s.execute(
            select(RunTagRow.run_id, RunTagRow.key, RunTagRow.value).where(
                RunTagRow.run_id.in_(ids)
            )
        ):
            tags[run_id][k] = v
        last = (
            select(
                RunMetricRow.run_id,
                RunMetricRow.key,
                func.max(RunMetricRow.id).label("last_id"),
            )
            .where(RunMetricRow.run_id.in_(ids))
            .group_by(RunMetricRow.run_id, RunMetricRow.key)
            .subquery()
        )
        for run_id, mk, mv in s.execute(
            select(RunMetricRow.run_id, RunMetricRow.key, RunMetricRow.value).join(
                last, RunMetricRow.id == last.c.last_id
            )
        ):
            metrics[run_id][mk] = mv
        return [_run(r, params[r.id], tags[r.id], metrics[r.id]) for r in rows]

    def page(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        status: str | None = None,
        pipeline: str | None = None,
        text: str | None = None,
        sort: str = "start_time",
        descending: bool = True,
        metric: str | None = None,
    ) -> tuple[list[Run], int]:
        """One page of runs and the number of runs matching the filters (for the dashboard).

        ``sort`` is a column (``start_time``, ``end_time``, ``name``, ``status``) or
        ``metric`` to order by the last value of the metric named ``metric`` (runs without it
        last). ``text`` matches the start of the id or any part of the name. Ordering always
        ends with the id so pages never overlap.
        """
        validation.page(limit, offset)
        from sqlalchemy import or_

        from modelyard.errors import InvalidParameter

        columns = {
            "start_time": RunRow.start_time,
            "end_time": RunRow.end_time,
            "name": RunRow.name,
            "status": RunRow.status,
        }
        where = []
        if status is not None:
            where.append(RunRow.status == status)
        if pipeline is not None:
            where.append(RunRow.pipeline == pipeline)
        if text:
            pattern = validation.like_pattern(text)
            where.append(
                or_(
                    RunRow.id.startswith(text.lower()),
                    RunRow.name.ilike(f"%{pattern}%", escape="\\"),
                )
            )
        query = select(RunRow).where(*where)
        if sort == "metric":
            if not metric:
                raise InvalidParameter("sorting by metric needs a metric name")
            # Correlated: one index probe (run_id, key) per candidate run, on both backends
            # (a grouped subquery joined back is a nested loop on SQLite: seconds at 10k).
            value = (
                select(RunMetricRow.value)
                .where(RunMetricRow.run_id == RunRow.id, RunMetricRow.key == metric)
                .order_by(RunMetricRow.id.desc())
                .limit(1)
                .scalar_subquery()
            )
            by_value = value.desc() if descending else value.asc()
            query = query.order_by(by_value.nulls_last(), RunRow.id)
        else:
            if sort not in columns:
                raise InvalidParameter(
                    f"cannot sort runs by {sort!r}; use {', '.join(columns)} or metric"
                )
            column = columns[sort]
            by_column = column.desc() if descending else column.asc()
            query = query.order_by(by_column.nulls_last(), RunRow.id)
        counted = select(func.count()).select_from(RunRow).where(*where)
        with self._db.session() as s:
            total = int(s.scalar(counted) or 0)
            rows = list(s.scalars(query.limit(limit).offset(offset)))
            return self._hydrate(s, rows), total

    def metric_keys(self, run_ids: Iterable[str]) -> list[str]:
        """The metric names logged by any of ``run_ids`` (for the compare view's charts)."""
        ids = list(run_ids)
        if not ids:
            return []
        with self._db.session() as s:
            keys = s.scalars(
                select(RunMetricRow.key)
                .where(RunMetricRow.run_id.in_(ids))
                .distinct()
                .order_by(RunMetricRow.key)
            )
            return list(keys)

    def pipelines(self) -> list[str]:
        """Every pipeline name that has runs (the dashboard's filter choices)."""
        with self._db.session() as s:
            names = s.scalars(
                select(RunRow.pipeline)
                .where(RunRow.pipeline.is_not(None))
                .distinct()
                .order_by(RunRow.pipeline)
            )
            return [n for n in names if n is not None]
