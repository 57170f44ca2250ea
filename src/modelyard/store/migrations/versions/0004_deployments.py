"""deploy: deployments, their revisions and events

Revision ID: 0004_deployments
Revises: 0003_registry
"""

from __future__ import annotations

revision = "0004_deployments"
down_revision = "0003_registry"
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
