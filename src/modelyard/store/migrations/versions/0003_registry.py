"""registry: registered models, versions, aliases and their history

Revision ID: 0003_registry
Revises: 0002_pipelines
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003_registry"
down_revision = "0002_pipelines"
branch_labels = None
depends_on = None


def _id() -> sa.Column[int]:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        autoincrement=True,
        nullable=False,
    )


def _ref(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False)


def _json(name: str) -> sa.Column[object]:
    return sa.Column(
        name,
        sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
        nullable=True,
    )


def upgrade() -> None:
    op.create_table(
        "registered_models",
        _id(),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=True),
        _json("gate"),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("name"),
    )
    op.create_table(
        "model_versions",
        _id(),
        _ref("model_id"),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=71), nullable=False),
        sa.Column("flavor", sa.String(length=64), nullable=False),
        _json("signature"),
        _json("requirements"),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("source", sa.Text(), nullable=True),
        sa.Column("description", sa.Text(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("trusted_pickle", sa.Boolean(), nullable=False),
        sa.Column("trusted_by", sa.String(length=256), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=True),
        sa.Column("image_id", sa.String(length=128), nullable=True),
        sa.Column("image_digest", sa.String(length=71), nullable=True),
        sa.Column("image_size", sa.BigInteger(), nullable=True),
        sa.Column("image_ref", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["model_id"], ["registered_models.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("model_id", "version", name="uq_model_versions_version"),
    )
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.create_index("ix_model_versions_digest", ["digest"], unique=False)
        batch_op.create_index("ix_model_versions_run_id", ["run_id"], unique=False)

    op.create_table(
        "model_version_tags",
        _ref("model_version_id"),
        sa.Column("key", sa.String(length=256), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("model_version_id", "key"),
    )
    op.create_table(
        "model_aliases",
        _ref("model_id"),
        sa.Column("alias", sa.String(length=64), nullable=False),
        _ref("model_version_id"),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(length=256), nullable=True),
        sa.ForeignKeyConstraint(["model_id"], ["registered_models.id"], ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("model_id", "alias"),
    )
    op.create_table(
        "model_alias_history",
        _id(),
        _ref("model_id"),
        sa.Column("alias", sa.String(length=64), nullable=False),
        sa.Column("from_version", sa.Integer(), nullable=True),
        sa.Column("to_version", sa.Integer(), nullable=True),
        sa.Column("actor", sa.String(length=256), nullable=True),
        sa.Column("moved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("forced", sa.Boolean(), nullable=False),
        _json("failed_checks"),
        sa.ForeignKeyConstraint(["model_id"], ["registered_models.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("model_alias_history", schema=None) as batch_op:
        batch_op.create_index(
            "ix_model_alias_history_model_alias", ["model_id", "alias"], unique=False
        )

    op.create_table(
        "model_approvals",
        _id(),
        _ref("model_version_id"),
        sa.Column("actor", sa.String(length=256), nullable=True),
        sa.Column("approved_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["model_version_id"], ["model_versions.id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("model_approvals", schema=None) as batch_op:
        batch_op.create_index("ix_model_approvals_version", ["model_version_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("model_approvals", schema=None) as batch_op:
        batch_op.drop_index("ix_model_approvals_version")
    op.drop_table("model_approvals")
    with op.batch_alter_table("model_alias_history", schema=None) as batch_op:
        batch_op.drop_index("ix_model_alias_history_model_alias")
    op.drop_table("model_alias_history")
    op.drop_table("model_aliases")
    op.drop_table("model_version_tags")
    with op.batch_alter_table("model_versions", schema=None) as batch_op:
        batch_op.drop_index("ix_model_versions_run_id")
        batch_op.drop_index("ix_model_versions_digest")
    op.drop_table("model_versions")
    op.drop_table("registered_models")
