"""The metadata store, one prefix per stage: ``<stage>.py`` is the repository,
``<stage>_schema.py`` its tables and ``<stage>_entities.py`` the frozen dataclasses it returns
(stages: data, tracking, pipeline, models, deploy, monitor, server). Only those plain values
leave this package; :mod:`~modelyard.store.core` holds the :class:`Store` over them all."""

from modelyard.store.core import Store
from modelyard.store.data_entities import Dataset, DatasetVersion
from modelyard.store.database import Database
from modelyard.store.tracking_entities import (
    RUN_FAILED,
    RUN_FINISHED,
    RUN_LOST,
    RUN_RUNNING,
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
