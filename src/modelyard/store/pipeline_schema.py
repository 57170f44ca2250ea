"""Tables of the pipeline stage (same declarative Base as schema.py).

A pipeline run is also a tracked run (its row in ``runs`` carries code, environment and
timing); ``pipeline_runs`` adds what only a pipeline has. ``pipeline_steps`` is the state of
each step in one pipeline run, which is what ``resume`` reads. ``pipeline_cache`` maps a cache
key to the outputs a successful execution published.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.store.schema import Base, Json, UTCDateTime


class PipelineRunRow(Base):
    __tablename__ = "pipeline_runs"
    __table_args__ = (
        Index("ix_pipeline_runs_pipeline", "pipeline"),
        Index("ix_pipeline_runs_created_at", "created_at"),
    )
    id: Mapped[str] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(256))
    pipeline_file: Mapped[str] = mapped_column(Text)
    params: Mapped[Any] = mapped_column(Json)
    status: Mapped[str] = mapped_column(String(16))
    runner: Mapped[str] = mapped_column(String(32))
    resumed_from: Mapped[str | None] = mapped_column(String(32))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    error: Mapped[str | None] = mapped_column(Text)


class PipelineStepRow(Base):
    __tablename__ = "pipeline_steps"
    pipeline_run_id: Mapped[str] = mapped_column(
        ForeignKey("pipeline_runs.id", ondelete="CASCADE"), primary_key=True
    )
    step: Mapped[str] = mapped_column(String(128), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    cache_key: Mapped[str | None] = mapped_column(String(71))
    attempts: Mapped[int] = mapped_column(Integer)
    outputs: Mapped[Any | None] = mapped_column(Json)
    error: Mapped[str | None] = mapped_column(Text)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class PipelineCacheRow(Base):
    __tablename__ = "pipeline_cache"
    cache_key: Mapped[str] = mapped_column(String(71), primary_key=True)
    pipeline: Mapped[str] = mapped_column(String(256))
    step: Mapped[str] = mapped_column(String(128))
    outputs: Mapped[Any] = mapped_column(Json)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())


__all__ = ["Base", "PipelineCacheRow", "PipelineRunRow", "PipelineStepRow"]
