"""Pipeline runs, the state of their steps, and the step cache."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select, update

from modelyard.errors import InvalidReference, InvalidValue, NotFound
from modelyard.store.database import Database
from modelyard.store.pipeline_entities import STEP_PENDING, STEP_RUNNING, PipelineRun, PipelineStep
from modelyard.store.pipeline_schema import PipelineCacheRow, PipelineRunRow, PipelineStepRow
from modelyard.store.schema import utcnow


def _step(row: PipelineStepRow) -> PipelineStep:
    return PipelineStep(
        step=row.step,
        position=row.position,
        status=row.status,
        run_id=row.run_id,
        cache_key=row.cache_key,
        attempts=row.attempts,
        outputs=row.outputs,
        error=row.error,
        started_at=row.started_at,
        ended_at=row.ended_at,
    )


def _run(row: PipelineRunRow, steps: Sequence[PipelineStepRow] = ()) -> PipelineRun:
    return PipelineRun(
        id=row.id,
        pipeline=row.pipeline,
        pipeline_file=row.pipeline_file,
        params=dict(row.params or {}),
        status=row.status,
        runner=row.runner,
        resumed_from=row.resumed_from,
        created_at=row.created_at,
        ended_at=row.ended_at,
        error=row.error,
        steps=tuple(_step(s) for s in sorted(steps, key=lambda s: s.position)),
    )


class PipelineRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create_run(
        self,
        run_id: str,
        *,
        pipeline: str,
        pipeline_file: str,
        params: Mapping[str, Any],
        runner: str,
        steps: Sequence[str],
        resumed_from: str | None = None,
    ) -> None:
        """The pipeline run and one pending row per step, in one transaction. ``run_id`` is
        the id of the pipeline's tracked run."""
        with self._db.session() as s:
            s.add(
                PipelineRunRow(
                    id=run_id,
                    pipeline=pipeline,
                    pipeline_file=pipeline_file,
                    params=dict(params),
                    status=STEP_RUNNING,
                    runner=runner,
                    resumed_from=resumed_from,
                    created_at=utcnow(),
                )
            )
            s.flush()
            s.add_all(
                PipelineStepRow(
                    pipeline_run_id=run_id,
                    step=name,
                    position=i,
                    status=STEP_PENDING,
                    attempts=0,
                )
                for i, name in enumerate(steps)
            )

    def update_step(self, pipeline_run_id: str, step: str, /, **values: Any) -> None:
        allowed = {
            "status",
            "run_id",
            "cache_key",
            "attempts",
            "outputs",
            "error",
            "started_at",
            "ended_at",
        }
        unknown = set(values) - allowed
        if unknown:
            raise InvalidValue(f"unknown step fields {sorted(unknown)}")
        if not values:
            return  # nothing to change; an empty SET is not valid SQL
        with self._db.session() as s:
            s.execute(
                update(PipelineStepRow)
                .where(
                    PipelineStepRow.pipeline_run_id == pipeline_run_id,
                    PipelineStepRow.step == step,
                )
                .values(**values)
            )

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        with self._db.session() as s:
            s.execute(
                update(PipelineRunRow)
                .where(PipelineRunRow.id == run_id)
                .values(status=status, error=error, ended_at=utcnow())
            )

    def resolve_id(self, id_or_prefix: str) -> str:
        text = id_or_prefix.strip().lower()
        if not text or not all(c in "0123456789abcdef" for c in text):
            raise InvalidReference(f"{id_or_prefix!r} is not a pipeline run id")
        with self._db.session() as s:
            ids = list(
                s.scalars(
                    select(PipelineRunRow.id).where(PipelineRunRow.id.startswith(text)).limit(2)
                )
            )
        if not ids:
            raise NotFound(f"no pipeline run {id_or_prefix!r}")
        if len(ids) > 1:
            raise InvalidReference(f"pipeline run prefix {id_or_prefix!r} is ambiguous")
        return ids[0]

    def get(self, id_or_prefix: str) -> PipelineRun:
        run_id = self.resolve_id(id_or_prefix)
        with self._db.session() as s:
            row = s.get(PipelineRunRow, run_id)
            if row is None:
                raise NotFound(f"no pipeline run {id_or_prefix!r}")
            steps = list(
                s.scalars(select(PipelineStepRow).where(PipelineStepRow.pipeline_run_id == run_id))
            )
            return _run(row, steps)

    def list(self, pipeline: str | None = None, limit: int = 50) -> list[PipelineRun]:
        """Newest first, with their steps."""
        with self._db.session() as s:
            query = select(PipelineRunRow).order_by(PipelineRunRow.created_at.desc()).limit(limit)
            if pipeline is not None:
                query = query.where(PipelineRunRow.pipeline == pipeline)
            rows = list(s.scalars(query))
            steps: dict[str, list[PipelineStepRow]] = {r.id: [] for r in rows}
            if rows:
                for st in s.scalars(
                    select(PipelineStepRow).where(PipelineStepRow.pipeline_run_id.in_(list(steps)))
                ):
                    steps[st.pipeline_run_id].append(st)
            return [_run(r, steps[r.id]) for r in rows]

    # -- cache ---------------------------------------------------------------------------------
    def cache_get(self, cache_key: str) -> tuple[dict[str, dict[str, str]], str | None] | None:
        """``(outputs, run_id)`` published under ``cache_key``, or None."""
        with self._db.session() as s:
            row = s.get(PipelineCacheRow, cache_key)
            return None if row is None else (dict(row.outputs), row.run_id)

    def cache_put(
        self,
        cache_key: str,
        *,
        pipeline: str,
        step: str,
        outputs: Mapping[str, Mapping[str, str]],
        run_id: str | None,
    ) -> None:
        stmt = self._db.insert(PipelineCacheRow).values(
            cache_key=cache_key,
            pipeline=pipeline,
            step=step,
            outputs={k: dict(v) for k, v in outputs.items()},
            run_id=run_id,
            created_at=utcnow(),
        )
        stmt = stmt.on_conflict_do_update(
            index_elements=["cache_key"],
            set_={"outputs": stmt.excluded.outputs, "run_id": stmt.excluded.run_id},
        )
        with self._db.session() as s:
            s.execute(stmt)
