"""monitor: monitor reports, events, policy state, retrain decisions

Revision ID: 0005_monitoring
Revises: 0004_deployments
"""

from __future__ import annotations

revision = "0005_monitoring"
down_revision = "0004_deployments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
