"""The metadata store. Only plain values (:mod:`modelyard.store.entities`) leave this package."""

from modelyard.store.core import Database, Store
from modelyard.store.entities import (
    RUN_FAILED,
    RUN_FINISHED,
    RUN_LOST,
    RUN_RUNNING,
    Dataset,
    DatasetVersion,
    Edge,
    Metric,
    Run,
    RunArtifact,
)

__all__ = [
    "RUN_FAILED",
    "RUN_FINISHED",
    "RUN_LOST",
    "RUN_RUNNING",
    "Database",
    "Dataset",
    "DatasetVersion",
    "Edge",
    "Metric",
    "Run",
    "RunArtifact",
    "Store",
]
