"""Runs one step execution: ``python -m modelyard.pipeline.worker TASK_JSON_PATH``.

WORKER CONTRACT (stable: the local and docker runners, and Argo, all speak it)
=============================================================================

The orchestrator writes a *task file* (JSON, UTF-8) and starts the worker with its absolute
path as the only argument. The working directory should be the workspace root. In a container
the workspace is bind-mounted at the same absolute path, so every path below stays valid.

Task file::

    {
      "format": 1,
      "workspace_root": "/abs/ws",            # the workspace folder (has modelyard.toml)
      "store_url": "sqlite:////abs/ws/.modelyard/modelyard.db",
      "artifact_root": "/abs/ws/.modelyard/artifacts",
      "pipeline_file": "/abs/ws/pipeline.py",
      "pipeline": "maintenance",             # the Pipeline's name
      "step": "train",                        # the step to run
      "params": {"n_estimators": 200},       # resolved values of this step's parameters
      "inputs": {                             # one entry per step input (upstream outputs and
        "features": {"digest": "sha256:…",    #   dataset("…") markers), read from the artifact
                     "serializer": "parquet"} #   store with the named serializer
      },
      "run_id": "0f3c…",                     # the tracked run of this step (null: none)
      "pipeline_run_id": "9a1b…",             # the pipeline's tracked run
      "attempt": 1,
      "scratch_dir": "/abs/ws/.modelyard/pipeline-runs/<run>/<step>/attempt-1",
      "result_path": "/abs/ws/.modelyard/pipeline-runs/<run>/<step>/attempt-1/result.json",
      "environment": {"image": null,          # optional: the step's own image, or the packages
                      "requirements": ["…"]}   #   of its own image (the docker runner reads it)
    }

The worker makes the task's workspace current (``with ws.use():``, see
:mod:`modelyard.workspace`), imports the pipeline file, reads the inputs, calls the step
function, writes each output to the artifact store and then writes the *result file*
atomically (temp file + rename)::

    {"outputs": {"model": {"digest": "sha256:…", "serializer": "skops"}}}           # success
    {"outputs": {}, "error": {"type": "ValueError", "message": "…", "traceback": "…"}}

As a subprocess (``main``), and only there, it also sets ``MODELYARD_WORKSPACE``,
``MODELYARD_STORE_URL`` and ``MODELYARD_ARTIFACT_ROOT`` in its own environment, for the processes
a step starts. The in-process runner never touches its host's environment.

Exit status: 0 on success, 1 when the step failed (the result file says why), 2 when the task
file itself is unusable. A worker that dies without a result file (SIGKILL, OOM, a container
that never started) is a failed step: the orchestrator reports the exit status and the log.

For Argo Workflows, where no orchestrator writes task files, the worker has Argo modes:
``python -m modelyard.pipeline.worker --argo …`` runs a step, ``--argo-start`` and
``--argo-finish`` open and close the pipeline run (see :mod:`modelyard.pipeline.argo_run`);
Kubeflow Pipelines' are ``--kfp``, ``--kfp-start`` and ``--kfp-finish``
(:mod:`modelyard.pipeline.kfp_run`).

Outputs written by a failed step are never *published*: the orchestrator records outputs in the
store only after reading a successful result file, so an interrupted step leaves at most
unreferenced blobs in the content-addressed store.
"""

from __future__ import annotations

import sys
from pathlib import Path

from modelyard.pipeline.execute import (
    EXIT_BAD_TASK,
    EXIT_OK,
    EXIT_STEP_FAILED,
    TASK_FORMAT,
    execute_task,
    read_task,
    run_task_file,
    task_environment,
    write_result,
)

__all__ = [
    "EXIT_BAD_TASK",
    "EXIT_OK",
    "EXIT_STEP_FAILED",
    "TASK_FORMAT",
    "execute_task",
    "main",
    "read_task",
    "task_environment",
    "write_result",
]


# The modes of compiled pipelines' pods: (module, function), imported only when used.
_PLATFORM_MODES = {
    "--argo": ("argo_run", "run_argo_step"),
    "--argo-start": ("argo_run", "run_argo_start"),
    "--argo-finish": ("argo_run", "run_argo_finish"),
    "--kfp": ("kfp_run", "run_kfp_step"),
    "--kfp-start": ("kfp_run", "run_kfp_start"),
    "--kfp-finish": ("kfp_run", "run_kfp_finish"),
}


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in _PLATFORM_MODES:
        import importlib

        module, function = _PLATFORM_MODES[args[0]]
        mode = getattr(importlib.import_module(f"modelyard.pipeline.{module}"), function)
        code: int = mode(args)
        return code
    if len(args) != 1:
        print("usage: python -m modelyard.pipeline.worker TASK_JSON_PATH", file=sys.stderr)
        return EXIT_BAD_TASK
    return run_task_file(Path(args[0]))


if __name__ == "__main__":
    sys.exit(main())
