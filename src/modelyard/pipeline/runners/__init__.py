"""Where step executions run. See :mod:`.base` for the protocol every runner implements."""

from __future__ import annotations

from modelyard.pipeline.runners.base import WORKER_MODULE, Execution, Runner

__all__ = ["WORKER_MODULE", "Execution", "Runner"]
