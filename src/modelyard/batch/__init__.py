"""Batch scoring: a model version over a dataset version, streamed in chunks, recorded as a new
dataset version with its lineage, and monitored like served traffic.

    modelyard predict maintenance@production sensors@4 --output maintenance-scores

is ``modelyard.batch.predict("maintenance@production", "sensors@4", output=...)`` (also
``modelyard.predict``); :func:`predict_step` is the same as a pipeline step, and
:func:`plan_job` the Kubernetes Job for a cluster.
"""

from modelyard.batch.job import DEFAULT_BATCH_ROWS, BatchProgress, BatchResult, predict
from modelyard.batch.kubernetes import JobSpec, plan_job, render_job
from modelyard.batch.step import predict_step

__all__ = [
    "DEFAULT_BATCH_ROWS",
    "BatchProgress",
    "BatchResult",
    "JobSpec",
    "plan_job",
    "predict",
    "predict_step",
    "render_job",
]
