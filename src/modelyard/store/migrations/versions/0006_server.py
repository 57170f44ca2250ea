"""server: API tokens and audit

Revision ID: 0006_server
Revises: 0005_monitoring
"""

from __future__ import annotations

revision = "0006_server"
down_revision = "0005_monitoring"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
