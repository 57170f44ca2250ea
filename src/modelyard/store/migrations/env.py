"""Alembic environment: always driven programmatically by :mod:`modelyard.store.migrate`,
which hands over an open connection."""

from __future__ import annotations

from alembic import context

from modelyard.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
