"""Every table of the metadata store: importing this module puts each stage's tables into
``Base.metadata`` (the Alembic environment, the reference scan and the schema test need them
all; a repository needs only its own stage's)."""

from __future__ import annotations

from modelyard.store import (
    data_schema,
    deploy_schema,
    models_schema,
    monitor_schema,
    pipeline_schema,
    server_schema,
    tracking_schema,
)
from modelyard.store.schema import Base

metadata = Base.metadata

__all__ = [
    "data_schema",
    "deploy_schema",
    "metadata",
    "models_schema",
    "monitor_schema",
    "pipeline_schema",
    "server_schema",
    "tracking_schema",
]
