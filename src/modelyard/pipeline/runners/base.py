"""The runner interface: how one step execution (a task file) becomes a finished process.

The orchestrator (:mod:`modelyard.pipeline.run`) decides *what* runs and records everything in
the store; a runner only decides *where* the worker command runs (a local subprocess, a Docker
container, the orchestrator's own process). Keeping this protocol tiny is what lets the docker
runner be written independently: it gets the same task file and must produce the same result
file (see :mod:`modelyard.pipeline.worker` for that contract).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

WORKER_MODULE = "modelyard.pipeline.worker"


@dataclass(frozen=True)
class Execution:
    """How the worker process ended. ``returncode`` is the process exit status (negative: killed
    by that signal, as :mod:`subprocess` reports it); ``None`` when it never ran or was stopped
    for exceeding ``timeout``. ``log_path`` holds its stdout and stderr, interleaved."""

    returncode: int | None
    timed_out: bool
    duration_s: float
    log_path: Path | None = None


@runtime_checkable
class Runner(Protocol):
    """Runs ``python -m modelyard.pipeline.worker TASK_JSON_PATH`` somewhere and waits.

    ``prepare`` is called once per pipeline run before any step starts (build or check an image,
    reach an engine) and should raise a :class:`modelyard.errors.ModelyardError` with a clear
    message when the runner cannot work. ``execute`` must never raise for a failing step: a step
    failure is reported by the worker's result file and the returned :class:`Execution`.
    ``execute`` is called from several threads at once when ``--jobs`` is above one.
    """

    name: str

    def prepare(self, workspace_root: Path, pipeline_file: Path) -> None: ...

    def execute(self, task_path: Path, *, timeout: float | None, log_path: Path) -> Execution: ...
