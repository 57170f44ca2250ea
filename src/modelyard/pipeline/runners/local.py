"""Local runners: each step in its own subprocess (the default), or in this process.

A subprocess per step is what makes a crash survivable: a segfault, an ``os._exit`` or a
SIGKILL ends the worker, not the orchestrator, which then records the step as failed. The
worker gets its own session so a timeout can kill it together with any children it started.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from modelyard.pipeline.runners.base import WORKER_MODULE, Execution


class LocalRunner:
    """``python -m modelyard.pipeline.worker TASK`` as a child process of this one."""

    name = "local"

    def __init__(self, python: str | None = None) -> None:
        self.python = python or sys.executable

    def prepare(self, workspace_root: Path, pipeline_file: Path) -> None:
        return None

    def execute(self, task_path: Path, *, timeout: float | None, log_path: Path) -> Execution:
        started = time.monotonic()
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("wb") as log:
            proc = subprocess.Popen(
                [self.python, "-m", WORKER_MODULE, str(task_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                return Execution(None, True, time.monotonic() - started, log_path)
            except BaseException:  # Ctrl-C in the orchestrator: do not leave the step running
                _kill_group(proc)
                raise
        return Execution(code, False, time.monotonic() - started, log_path)


class InProcessRunner:
    """Runs the step in the orchestrator's own process, for stepping through it with a
    debugger. No isolation: a crash takes the orchestrator down, and ``timeout`` is not
    enforced."""

    name = "in-process"

    def prepare(self, workspace_root: Path, pipeline_file: Path) -> None:
        return None

    def execute(self, task_path: Path, *, timeout: float | None, log_path: Path) -> Execution:
        from modelyard.pipeline.execute import execute_task, read_task, write_result

        started = time.monotonic()
        task = read_task(task_path)
        result = execute_task(task)
        write_result(Path(task["result_path"]), result)
        return Execution(1 if "error" in result else 0, False, time.monotonic() - started, None)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
