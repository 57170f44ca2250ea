"""Executing one step from its task file: read the task, run the step, write the result. The
contract (task and result files, exit statuses) is described in :mod:`modelyard.pipeline.worker`,
the process entry point; the in-process runner and Argo's step mode call
:func:`execute_task` directly."""

from __future__ import annotations

import json
import os
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidValue
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
        raise InvalidValue(f"{path}: not a modelyard task file (format {TASK_FORMAT})")
    missing = [k for k in _REQUIRED if k not in doc]
    if missing:
        raise InvalidValue(f"{path}: task file lacks {', '.join(missing)}")
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


def run_task_file(path: Path) -> int:
    """The worker process's whole job (``python -m modelyard.pipeline.worker TASK``, or a
    process forked by the warm server): run the task, write its result, return the exit
    status. This process is the step's own, so it moves into the workspace and sets the
    ``MODELYARD_*`` variables for the processes the step starts."""
    import sys

    try:
        task = read_task(path)
    except (OSError, ValueError) as exc:
        print(f"modelyard worker: {exc}", file=sys.stderr)
        return EXIT_BAD_TASK
    os.chdir(task["workspace_root"])
    os.environ.update(task_environment(task))
    result = execute_task(task)
    write_result(Path(task["result_path"]), result)
    if "error" in result:
        print(result["error"]["traceback"], file=sys.stderr)
        return EXIT_STEP_FAILED
    return EXIT_OK


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
