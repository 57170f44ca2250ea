"""models: code trust bound to a digest (who, when, which content)

Revision ID: 0007_code_trust
Revises: 0006_server
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007_code_trust"
down_revision = "0006_server"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("trusted_digest", sa.String(length=71), nullable=True))
        batch.add_column(sa.Column("trusted_at", sa.DateTime(timezone=True), nullable=True))
    # Trust given before this revision was given to the content the version has held since.
    op.execute(
        "UPDATE model_versions SET trusted_digest = digest, trusted_at = created_at "
        "WHERE trusted_pickle"
    )


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_column("trusted_at")
        batch.drop_column("trusted_digest")
