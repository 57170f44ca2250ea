"""Tables of the registry stage (same declarative Base as schema.py).

A registered model owns numbered versions; aliases point at versions and every move of an alias
is appended to ``model_alias_history`` (never updated), so "who put version 5 into production,
and why" always has an answer. The image columns of a version are filled in by the packaging
stage later; they exist now so that stage needs no migration.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, Integer, String, Text, text
from sqlalchemy import UniqueConstraint as Unique
from sqlalchemy.orm import Mapped, mapped_column

from modelyard.store.schema import Base, BigId, Json, UTCDateTime


class RegisteredModelRow(Base):
    __tablename__ = "registered_models"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    description: Mapped[str | None] = mapped_column(Text)
    # The model's own promotion gate: {"checks": [...], "require_approval": bool, "aliases": [...]}
    gate: Mapped[Any | None] = mapped_column(Json)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str | None] = mapped_column(String(256))


ACTIVE_RUN_REGISTRATION = "status = 'active' AND run_id IS NOT NULL"


class ModelVersionRow(Base):
    __tablename__ = "model_versions"
    __table_args__ = (
        Unique("model_id", "version", name="uq_model_versions_version"),
        Index("ix_model_versions_digest", "digest"),
        Index("ix_model_versions_run_id", "run_id"),
        # One active version per (model, run, content, trust): registering what a run already
        # registered returns that version, even when two registrations race.
        Index(
            "uq_model_versions_run_digest",
            "model_id",
            "run_id",
            "digest",
            "trusted_pickle",
            unique=True,
            sqlite_where=text(ACTIVE_RUN_REGISTRATION),
            postgresql_where=text(ACTIVE_RUN_REGISTRATION),
        ),
    )
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    version: Mapped[int] = mapped_column(Integer)
    digest: Mapped[str] = mapped_column(String(71))
    flavor: Mapped[str] = mapped_column(String(64))
    signature: Mapped[Any | None] = mapped_column(Json)
    requirements: Mapped[Any | None] = mapped_column(Json)
    run_id: Mapped[str | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    source: Mapped[str | None] = mapped_column(Text)
    description: Mapped[str | None] = mapped_column(Text)
    status: Mapped[str] = mapped_column(String(16))
    trusted_pickle: Mapped[bool] = mapped_column(Boolean)
    trusted_by: Mapped[str | None] = mapped_column(String(256))
    # The content the trust was given to, and when: trust is bound to a digest, not a number.
    trusted_digest: Mapped[str | None] = mapped_column(String(71))
    trusted_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_by: Mapped[str | None] = mapped_column(String(256))
    image_id: Mapped[str | None] = mapped_column(String(128))
    image_digest: Mapped[str | None] = mapped_column(String(71))
    image_size: Mapped[int | None] = mapped_column(BigInteger)
    image_ref: Mapped[str | None] = mapped_column(Text)


class ModelVersionTagRow(Base):
    __tablename__ = "model_version_tags"
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE"), primary_key=True
    )
    key: Mapped[str] = mapped_column(String(256), primary_key=True)
    value: Mapped[str] = mapped_column(Text)


class ModelAliasRow(Base):
    __tablename__ = "model_aliases"
    model_id: Mapped[int] = mapped_column(
        ForeignKey("registered_models.id", ondelete="CASCADE"), primary_key=True
    )
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE")
    )
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())
    updated_by: Mapped[str | None] = mapped_column(String(256))


class ModelAliasHistoryRow(Base):
    __tablename__ = "model_alias_history"
    __table_args__ = (Index("ix_model_alias_history_model_alias", "model_id", "alias"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model_id: Mapped[int] = mapped_column(ForeignKey("registered_models.id", ondelete="CASCADE"))
    alias: Mapped[str] = mapped_column(String(64))
    from_version: Mapped[int | None] = mapped_column(Integer)
    to_version: Mapped[int | None] = mapped_column(Integer)
    actor: Mapped[str | None] = mapped_column(String(256))
    moved_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str | None] = mapped_column(Text)
    forced: Mapped[bool] = mapped_column(Boolean)
    failed_checks: Mapped[Any | None] = mapped_column(Json)


class ModelApprovalRow(Base):
    __tablename__ = "model_approvals"
    __table_args__ = (Index("ix_model_approvals_version", "model_version_id"),)
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    model_version_id: Mapped[int] = mapped_column(
        ForeignKey("model_versions.id", ondelete="CASCADE")
    )
    actor: Mapped[str | None] = mapped_column(String(256))
    approved_at: Mapped[datetime] = mapped_column(UTCDateTime())
    comment: Mapped[str | None] = mapped_column(Text)


__all__ = [
    "Base",
    "ModelAliasHistoryRow",
    "ModelAliasRow",
    "ModelApprovalRow",
    "ModelVersionRow",
    "ModelVersionTagRow",
    "RegisteredModelRow",
]
