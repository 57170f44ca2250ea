"""Lineage arrows. Node types are short strings owned by the stage that records them:
``dataset_version`` (id ``name@version``), ``run`` (run id), ``artifact`` (digest), and
later ``model_version``, ``image``, ``deployment``, ``monitor_report``."""

from __future__ import annotations

from sqlalchemy import or_, select

from modelyard.store.database import Database
from modelyard.store.schema import utcnow
from modelyard.store.tracking_entities import Edge
from modelyard.store.tracking_schema import LineageEdgeRow


class LineageRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add(
        self, source_type: str, source_id: str, target_type: str, target_id: str, relation: str
    ) -> None:
        """Record ``source --relation--> target``; recording the same arrow twice is a no-op."""
        stmt = (
            self._db.insert(LineageEdgeRow)
            .values(
                source_type=source_type,
                source_id=source_id,
                target_type=target_type,
                target_id=target_id,
                relation=relation,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing()
        )
        with self._db.session() as s:
            s.execute(stmt)

    def edges_from(self, node_type: str, node_id: str) -> list[Edge]:
        return self._query(
            (LineageEdgeRow.source_type == node_type) & (LineageEdgeRow.source_id == node_id)
        )

    def edges_to(self, node_type: str, node_id: str) -> list[Edge]:
        return self._query(
            (LineageEdgeRow.target_type == node_type) & (LineageEdgeRow.target_id == node_id)
        )

    def edges_touching(self, node_type: str, node_id: str) -> list[Edge]:
        return self._query(
            or_(
                (LineageEdgeRow.source_type == node_type) & (LineageEdgeRow.source_id == node_id),
                (LineageEdgeRow.target_type == node_type) & (LineageEdgeRow.target_id == node_id),
            )
        )

    def _query(self, where: object) -> list[Edge]:
        with self._db.session() as s:
            rows = s.scalars(select(LineageEdgeRow).where(where).order_by(LineageEdgeRow.id))  # type: ignore[arg-type]
            return [
                Edge(
                    r.source_type, r.source_id, r.target_type, r.target_id, r.relation, r.created_at
                )
                for r in rows
            ]
