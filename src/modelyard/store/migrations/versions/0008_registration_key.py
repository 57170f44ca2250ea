"""models: one active version per (model, run, content, trust)

Registering what a run already registered returns the existing version. That check used to run
before the insert, in another transaction, so two registrations racing could both pass it and
make two versions; the unique index makes the loser's insert fail, and it then finds the
winner's version.

Revision ID: 0008_registration_key
Revises: 0007_code_trust
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_registration_key"
down_revision = "0007_code_trust"
branch_labels = None
depends_on = None

_WHERE = "status = 'active' AND run_id IS NOT NULL"


def upgrade() -> None:
    # Duplicates that an earlier race made: the first version of each stays active, the later
    # identical ones (same run, same content) are archived, as 'models archive' would.
    op.execute(
        "UPDATE model_versions SET status = 'archived' WHERE status = 'active' AND run_id IS NOT "
        "NULL AND EXISTS (SELECT 1 FROM model_versions AS first WHERE first.model_id = "
        "model_versions.model_id AND first.run_id = model_versions.run_id AND first.digest = "
        "model_versions.digest AND first.trusted_pickle = model_versions.trusted_pickle AND "
        "first.status = 'active' AND first.version < model_versions.version)"
    )
    op.create_index(
        "uq_model_versions_run_digest",
        "model_versions",
        ["model_id", "run_id", "digest", "trusted_pickle"],
        unique=True,
        sqlite_where=sa.text(_WHERE),
        postgresql_where=sa.text(_WHERE),
    )


def downgrade() -> None:
    op.drop_index("uq_model_versions_run_digest", table_name="model_versions")
