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
      "result_path": "/abs/ws/.modelyard/pipeline-runs/<run>/<step>/attempt-1/result.json"
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
``--argo-finish`` open and close the pipeline run (see :mod:`modelyard.pipeline.argo_run`).

Outputs written by a failed step are never *published*: the orchestrator records outputs in the
store only after reading a successful result file, so an interrupted step leaves at most
unreferenced blobs in the content-addressed store.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.pipeline.context import StepContext, activate
from modelyard.pipeline.serializers import StoredValue, dump, load

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

TASK_FORMAT = 1
EXIT_OK = 0
EXIT_STEP_FAILED = 1
EXIT_BAD_TASK = 2


def read_task(path: Path) -> dict[str, Any]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(doc, dict) or doc.get("format") != TASK_FORMAT:
        raise ValueError(f"{path}: not a modelyard task file (format {TASK_FORMAT})")
    missing = [k for k in _REQUIRED if k not in doc]
    if missing:
        raise ValueError(f"{path}: task file lacks {', '.join(missing)}")
    return doc


_REQUIRED = (
    "workspace_root",
    "store_url",
    "artifact_root",
    "pipeline_file",
    "step",
    "params",
    "inputs",
    "result_path",
    "scratch_dir",
)


def write_result(path: Path, result: Mapping[str, Any]) -> None:
    """Atomic: a reader sees no result file or a complete one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(result, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def task_environment(task: Mapping[str, Any]) -> dict[str, str]:
    """The ``MODELYARD_*`` variables that point at the task's workspace."""
    return {
        "MODELYARD_WORKSPACE": str(task["workspace_root"]),
        "MODELYARD_STORE_URL": str(task["store_url"]),
        "MODELYARD_ARTIFACT_ROOT": str(task["artifact_root"]),
    }


def execute_task(task: Mapping[str, Any]) -> dict[str, Any]:
    """Run the step a task describes and return the result document (never raises for a step
    failure). Shared by the subprocess entry point and the in-process runner.

    While the step runs, the task's workspace is the current one (``Workspace.use``), so a step
    calling ``modelyard.data.add(...)`` without a workspace finds it. That is a context
    variable: steps running in parallel threads each see their own, and ``os.environ`` is
    neither read for it nor changed."""
    from modelyard.workspace import Workspace

    ws = Workspace.at(Path(task["workspace_root"]), {**os.environ, **task_environment(task)})
    ctx = StepContext(ws, task.get("run_id"), str(task["step"]))
    try:
        with ws.use():
            return _run_step(task, ws, ctx)
    except (Exception, SystemExit) as exc:  # the step's own failure, reported, not raised
        return {
            "outputs": {},
            "error": {
                "type": type(exc).__name__,
                "message": str(exc),
                "traceback": traceback.format_exc(),
            },
        }
    finally:
        ws.close()


def _run_step(task: Mapping[str, Any], ws: Workspace, ctx: StepContext) -> dict[str, Any]:
    from modelyard.pipeline.graph import build_graph
    from modelyard.pipeline.loader import load_pipeline

    graph = build_graph(load_pipeline(Path(task["pipeline_file"]), task.get("pipeline")))
    node = graph.nodes.get(str(task["step"]))
    if node is None:
        raise LookupError(f"pipeline {graph.pipeline.name!r} has no step {task['step']!r}")
    spec = node.spec
    scratch = Path(task["scratch_dir"]) / "inputs"
    kwargs: dict[str, Any] = {}
    for arg, doc in dict(task["inputs"]).items():
        stored = StoredValue.from_json(doc)
        producer = graph.nodes.get(node.inputs.get(arg, ""))
        if stored.serializer == "pickle" and (producer is None or not producer.spec.pickle):
            # The serializer name arrives in the task (on Argo, in workflow parameters);
            # only the pipeline's own code may say a value is a pickle.
            raise PermissionError(
                f"input {arg!r} is marked as a pickle, but the step producing it did not "
                "declare @step(pickle=True); refusing to unpickle it"
            )
        kwargs[arg] = load(
            stored,
            artifacts=ws.artifacts,
            scratch=scratch / arg,
            resolve_dataset=ctx.resolve_dataset,
        )
    kwargs.update(dict(task["params"]))
    with activate(ctx):
        returned = spec.fn(**kwargs)
    values = _split_outputs(spec.name, spec.outputs, returned)
    outputs = {
        name: dump(
            value,
            step=spec.name,
            output=name,
            artifacts=ws.artifacts,
            allow_pickle=spec.pickle,
        ).to_json()
        for name, value in values.items()
    }
    ctx.flush()
    return {"outputs": outputs}


def _split_outputs(step: str, names: tuple[str, ...], returned: Any) -> dict[str, Any]:
    if not names:
        return {}
    if len(names) == 1:
        return {names[0]: returned}
    if isinstance(returned, Mapping):
        missing = [n for n in names if n not in returned]
        if missing:
            raise TypeError(f"step {step!r} returned a dict without outputs {missing}")
        return {n: returned[n] for n in names}
    if isinstance(returned, tuple | list) and len(returned) == len(names):
        return dict(zip(names, returned, strict=True))
    raise TypeError(
        f"step {step!r} declares outputs {list(names)} and must return a tuple of "
        f"{len(names)} values or a dict with those keys, not {type(returned).__name__}"
    )


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if args and args[0] in ("--argo", "--argo-start", "--argo-finish"):
        from modelyard.pipeline import argo_run

        mode = {
            "--argo": argo_run.run_argo_step,
            "--argo-start": argo_run.run_argo_start,
            "--argo-finish": argo_run.run_argo_finish,
        }[args[0]]
        return mode(args)
    if len(args) != 1:
        print("usage: python -m modelyard.pipeline.worker TASK_JSON_PATH", file=sys.stderr)
        return EXIT_BAD_TASK
    try:
        task = read_task(Path(args[0]))
    except (OSError, ValueError) as exc:
        print(f"modelyard worker: {exc}", file=sys.stderr)
        return EXIT_BAD_TASK
    os.chdir(task["workspace_root"])
    # This process is the step's own: the processes it starts inherit its workspace.
    os.environ.update(task_environment(task))
    result = execute_task(task)
    write_result(Path(task["result_path"]), result)
    if "error" in result:
        print(result["error"]["traceback"], file=sys.stderr)
        return EXIT_STEP_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
