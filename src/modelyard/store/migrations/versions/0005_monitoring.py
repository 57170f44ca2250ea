"""monitor: monitor reports, actions (alerts, retrain decisions) and leases

Revision ID: 0005_monitoring
Revises: 0004_deployments
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0005_monitoring"
down_revision = "0004_deployments"
branch_labels = None
depends_on = None


def _id() -> sa.Column[int]:
    return sa.Column(
        "id",
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
        autoincrement=True,
        nullable=False,
    )


def _json(name: str) -> sa.Column[object]:
    return sa.Column(
        name,
        sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
        nullable=True,
    )


def _when(name: str, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "monitor_reports",
        _id(),
        sa.Column("deployment", sa.String(length=128), nullable=False),
        sa.Column("model_name", sa.String(length=128), nullable=True),
        sa.Column("model_version", sa.Integer(), nullable=True),
        _when("window_end", nullable=True),
        _json("metrics"),
        _json("details"),
        _json("fired"),
        _when("created_at"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_monitor_reports_deployment", "monitor_reports", ["deployment", "id"])
    op.create_table(
        "monitor_actions",
        _id(),
        sa.Column("report_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("deployment", sa.String(length=128), nullable=False),
        sa.Column("policy", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        _json("detail"),
        _when("started_at"),
        _when("ended_at", nullable=True),
        sa.ForeignKeyConstraint(["report_id"], ["monitor_reports.id"], ondelete="SET NULL"),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_monitor_actions_policy", "monitor_actions", ["deployment", "policy", "id"])
    op.create_table(
        "monitor_leases",
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("holder", sa.String(length=128), nullable=False),
        _when("acquired_at"),
        _when("expires_at"),
        sa.PrimaryKeyConstraint("name"),
    )


def downgrade() -> None:
    op.drop_table("monitor_leases")
    op.drop_index("ix_monitor_actions_policy", table_name="monitor_actions")
    op.drop_table("monitor_actions")
    op.drop_index("ix_monitor_reports_deployment", table_name="monitor_reports")
    op.drop_table("monitor_reports")
