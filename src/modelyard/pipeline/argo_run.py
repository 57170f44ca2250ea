"""The worker's Argo modes: what runs inside the pods of a compiled workflow.

``--argo-start`` (the first task) starts the pipeline run, ``--argo`` runs one step as a child
run of it, ``--argo-finish`` (the exit handler) ends it. Together they leave the same records a
local run leaves, so ``modelyard pipeline runs``/``show``, ``runs`` and the dashboard show an
Argo pipeline run like any other (runner ``argo``). Argo reruns a failed step's container for
its ``retryStrategy``: each attempt is a tracked run of its own, and the step's row counts them.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import threading
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import ConfigError, ModelyardError, NotFound
from modelyard.pipeline.argo import step_template_name
from modelyard.pipeline.graph import Graph, build_graph
from modelyard.pipeline.loader import load_pipeline
from modelyard.pipeline.params import parse_assignments, resolve_params
from modelyard.store.pipeline_entities import (
    STEP_DONE,
    STEP_FAILED,
    STEP_FINISHED,
    STEP_PENDING,
    STEP_RUNNING,
    STEP_SKIPPED,
)
from modelyard.store.tracking_entities import RUN_RUNNING

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

log = logging.getLogger(__name__)

RUNNER = "argo"
RUN_FINISHED = "finished"
RUN_FAILED = "failed"
ARGO_SUCCEEDED = "Succeeded"
_RETRY_SUFFIX = re.compile(r"\((\d+)\)$")


def pipeline_run_id(workflow_uid: str) -> str:
    """The pipeline run's id: the workflow's uid (a UUID) as 32 hex digits, like every run id."""
    text = workflow_uid.strip().lower().replace("-", "")
    if len(text) != 32 or any(c not in "0123456789abcdef" for c in text):
        raise ConfigError(f"--pipeline-run {workflow_uid!r} is not a workflow uid")
    return text


def _parser(mode: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m modelyard.pipeline.worker {mode}")
    parser.add_argument(mode, action="store_true")
    parser.add_argument("--pipeline-file", required=True)
    parser.add_argument("--pipeline")
    return parser


def run_argo_start(argv: Sequence[str]) -> int:
    """``--argo-start``: the pipeline's tracked run and its pipeline run record, one pending
    row per step. Idempotent, so a retried pod does no harm."""
    from modelyard.workspace import Workspace

    parser = _parser("--argo-start")
    parser.add_argument("--pipeline-run", required=True)
    parser.add_argument("--workflow", default="")
    parser.add_argument("--param", action="append", default=[])
    ns = parser.parse_args(list(argv))
    run_id = pipeline_run_id(ns.pipeline_run)
    graph = build_graph(load_pipeline(Path(ns.pipeline_file), ns.pipeline))
    params = resolve_params(graph, parse_assignments(ns.param))
    tags = {"modelyard.argo.workflow": ns.workflow} if ns.workflow else {}
    ws = Workspace.find()
    try:
        open_pipeline_run(ws, run_id, graph, params, ns.pipeline_file, runner=RUNNER, tags=tags)
    finally:
        ws.close()
    print(f"pipeline run {run_id} ({graph.pipeline.name}) started")
    return 0


def open_pipeline_run(
    ws: Workspace,
    run_id: str,
    graph: Graph,
    params: Mapping[str, Any],
    pipeline_file: str,
    *,
    runner: str,
    tags: Mapping[str, str],
) -> None:
    """The pipeline's tracked run (left running: the exit handler ends it) and its pipeline
    run record with one pending row per step; what exists already is kept (a retried pod)."""
    from modelyard.tracking import start_run

    name = graph.pipeline.name
    if not _exists(lambda: ws.store.runs.get(run_id)):
        all_tags = {"modelyard.kind": "pipeline", "modelyard.runner": runner, **tags}
        active = start_run(
            name, pipeline=name, params=dict(params), tags=all_tags, workspace=ws, run_id=run_id
        )
        active.detach()  # the exit handler ends it; steps keep its heartbeat going
    if not _exists(lambda: ws.store.pipelines.get(run_id)):
        ws.store.pipelines.create_run(
            run_id,
            pipeline=name,
            pipeline_file=pipeline_file,
            params=dict(params),
            runner=runner,
            steps=graph.order,
        )


def run_argo_step(argv: Sequence[str]) -> int:
    """``--argo``: build the task from arguments and the environment instead of a task file,
    run the step as a tracked run (a child of the pipeline run), record it in the step's row
    and write ``{output: {digest, serializer}}`` for Argo to pass downstream."""
    from modelyard.workspace import Workspace

    parser = _parser("--argo")
    parser.add_argument("--step", required=True)
    parser.add_argument("--outputs-file", required=True)
    parser.add_argument("--pipeline-run", help="the workflow uid (absent: a standalone run)")
    parser.add_argument("--retry", type=int, default=0, help="Argo's retry number, 0 first")
    parser.add_argument("--param", action="append", default=[])
    parser.add_argument("--upstream", action="append", default=[])
    ns = parser.parse_args(list(argv))
    graph, params, upstream = step_arguments(ns)
    parent = None if ns.pipeline_run is None else pipeline_run_id(ns.pipeline_run)
    ws = Workspace.find()
    # Argo will rerun the container while its retries last; only the last failure is final.
    final = ns.retry >= graph.nodes[ns.step].spec.retries
    return run_step_pod(ws, graph, ns, parent, params, upstream, final=final)


def run_step_pod(
    ws: Workspace,
    graph: Graph,
    ns: argparse.Namespace,
    parent: str | None,
    params: Mapping[str, Any],
    upstream: Mapping[str, Any],
    *,
    final: bool | None,
) -> int:
    """Run ``ns.step`` (see :meth:`ClusterStep.run`), close ``ws``, and write the outputs to
    ``ns.outputs_file`` for the platform: the exit status of a step's pod."""
    try:
        step = ClusterStep(ws, graph, ns.step, parent, ns.pipeline_file)
        outputs = step.run(params, upstream, final=final)
    finally:
        ws.close()
    if outputs is None:
        return 1
    write_outputs(ns.outputs_file, outputs)
    return 0


def step_arguments(ns: argparse.Namespace) -> tuple[Graph, dict[str, Any], dict[str, Any]]:
    """A step pod's graph, parameters and upstream outputs, from its parsed arguments
    (``--pipeline-file``, ``--pipeline``, ``--step``, ``--param``, ``--upstream``)."""
    graph = build_graph(load_pipeline(Path(ns.pipeline_file), ns.pipeline))
    if ns.step not in graph.nodes:
        raise NotFound(f"pipeline {graph.pipeline.name!r} has no step {ns.step!r}")
    params = resolve_params(graph, parse_assignments(ns.param))
    upstream: dict[str, Any] = {}
    for doc in ns.upstream:
        value = json.loads(doc)
        if not isinstance(value, dict):
            raise ConfigError(f"--upstream {doc[:80]!r} is not a JSON object of outputs")
        upstream.update(value)
    return graph, params, upstream


def write_outputs(path: str, outputs: Mapping[str, Any]) -> None:
    """The step's ``{output: {digest, serializer}}`` where the platform reads it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(outputs), encoding="utf-8")


class ClusterStep:
    """One attempt of one step in a pod, and its bookkeeping in the pipeline run (when there
    is one). Shared by the Argo and Kubeflow modes of the worker."""

    def __init__(
        self, ws: Workspace, graph: Graph, step: str, parent: str | None, pipeline_file: str
    ) -> None:
        self.ws = ws
        self.graph = graph
        self.step = step
        self.parent = parent
        self.pipeline_file = pipeline_file

    def _update(self, **values: Any) -> None:
        if self.parent is not None:
            self.ws.store.pipelines.update_step(self.parent, self.step, **values)

    def run(
        self, params: Mapping[str, Any], upstream: Mapping[str, Any], *, final: bool | None
    ) -> dict[str, Any] | None:
        """The step's outputs, or None when it failed (the error is recorded and printed).

        ``final`` says whether a failure is the step's last (the platform will not retry);
        ``None`` counts the attempts recorded in the step's row against its ``retries``."""
        from modelyard.store.schema import utcnow

        if self.parent is not None:
            row = self.ws.store.pipelines.get(self.parent).step(self.step)
            self._update(
                status=STEP_RUNNING,
                attempts=row.attempts + 1,
                started_at=row.started_at or utcnow(),
                ended_at=None,
                error=None,
            )
            if final is None:
                final = row.attempts + 1 > self.graph.nodes[self.step].spec.retries
        final = True if final is None else final
        with _keep_alive(self.ws, self.parent):
            try:
                outputs, error = self._execute(params, upstream)
            except Exception as exc:  # orchestration trouble: an unknown dataset, the store
                traceback.print_exc()
                error = exc.message if isinstance(exc, ModelyardError) else _text(exc)
                outputs = None
        if outputs is None:
            # Until Argo's last retry the step is still running, as in the local runner.
            status = STEP_FAILED if final else STEP_RUNNING
            self._update(status=status, error=error, ended_at=utcnow() if final else None)
            return None
        self._update(status=STEP_FINISHED, outputs=outputs, ended_at=utcnow())
        return outputs

    def _execute(
        self, params: Mapping[str, Any], upstream: Mapping[str, Any]
    ) -> tuple[dict[str, Any] | None, str]:
        import tempfile

        from modelyard.pipeline.execute import execute_task
        from modelyard.pipeline.run import record_step_input, record_step_outputs
        from modelyard.pipeline.serializers import StoredValue, dump
        from modelyard.tracking import resolve_dataset_version, start_run

        ws, node = self.ws, self.graph.nodes[self.step]
        inputs = {arg: StoredValue.from_json(upstream[arg]) for arg in node.inputs}
        for arg, ref in node.datasets.items():
            version = resolve_dataset_version(ws, ref)
            inputs[arg] = dump(
                version, step=self.step, output=arg, artifacts=ws.artifacts, allow_pickle=False
            )
        step_params = {p: params[p] for p in node.params}
        with start_run(
            self.step,
            pipeline=self.graph.pipeline.name,
            parent_id=self.parent,
            params=step_params,
            tags={"modelyard.step": self.step},
            workspace=ws,
        ) as run:
            self._update(run_id=run.id)
            for value in inputs.values():
                record_step_input(ws, run.id, value)
            with tempfile.TemporaryDirectory(prefix="modelyard-step-") as folder:
                scratch = Path(folder)
                result = execute_task(
                    {
                        "workspace_root": str(ws.root),
                        "store_url": ws.settings.store_url,
                        "artifact_root": str(ws.settings.artifact_root),
                        "pipeline_file": self.pipeline_file,
                        "pipeline": self.graph.pipeline.name,
                        "step": self.step,
                        "params": step_params,
                        "inputs": {k: v.to_json() for k, v in inputs.items()},
                        "run_id": run.id,
                        "pipeline_run_id": self.parent,
                        "scratch_dir": str(scratch),
                        "result_path": str(scratch / "result.json"),
                    }
                )
            if "error" in result:
                err = result["error"]
                print(err["traceback"], file=sys.stderr)
                error = f"{err['type']}: {err['message']}"
                run.end(RUN_FAILED, error)
                return None, error
            outputs = {k: StoredValue.from_json(v) for k, v in result["outputs"].items()}
            record_step_outputs(ws, run.id, outputs)
        return dict(result["outputs"]), ""


def run_argo_finish(argv: Sequence[str]) -> int:
    """``--argo-finish`` (the exit handler): settle every step Argo left unsettled — never
    started (skipped), or started and never reported (killed, out of memory, past its
    deadline: failed, with Argo's message) — then end the pipeline run and its tracked run."""
    from modelyard.workspace import Workspace

    parser = _parser("--argo-finish")
    parser.add_argument("--pipeline-run", required=True)
    parser.add_argument("--status", required=True, help="{{workflow.status}}")
    parser.add_argument("--failures", default="", help="{{workflow.failures}}")
    ns = parser.parse_args(list(argv))
    run_id = pipeline_run_id(ns.pipeline_run)
    ws = Workspace.find()
    try:
        status, error = _finish(ws, run_id, ns, _failed_nodes(ns.failures))
    finally:
        ws.close()
    print(f"pipeline run {run_id} {status}" + (f": {error}" if error else ""))
    return 0


def _finish(
    ws: Workspace, run_id: str, ns: argparse.Namespace, failures: Sequence[Mapping[str, Any]]
) -> tuple[str, str | None]:
    messages = _messages_by_template(failures)
    return settle_pipeline_run(
        ws,
        run_id,
        succeeded=ns.status == ARGO_SUCCEEDED,
        ended=f"the Argo workflow ended {ns.status}",
        platform_message=_first_message(failures),
        step_message=lambda step: messages.get(step_template_name(step)),
        ancestors=ancestors_of(ns.pipeline_file, ns.pipeline),
    )


def settle_pipeline_run(
    ws: Workspace,
    run_id: str,
    *,
    succeeded: bool,
    ended: str,
    platform_message: str | None,
    step_message: Callable[[str], str | None],
    ancestors: Mapping[str, set[str]],
) -> tuple[str, str | None]:
    """What an exit handler does once the platform is done: settle every step left unsettled
    (pending: skipped; running: failed, with the platform's message for it) and end the
    pipeline run and its tracked run. ``succeeded`` is the platform's verdict; ``ended`` says
    how it ended, for the messages."""
    from modelyard.store.schema import utcnow

    repo = ws.store.pipelines
    try:
        record = repo.get(run_id)
    except NotFound:
        record = None
    if record is None:  # the start task failed before recording it; its tracked run may exist
        error = platform_message or ended
        if _exists(lambda: ws.store.runs.get(run_id)):
            ws.store.runs.finish(run_id, RUN_FAILED, error)
        return RUN_FAILED, error
    failed: dict[str, str] = {}
    for s in record.steps:  # in pipeline order: upstream steps are settled first
        if s.status == STEP_RUNNING:
            error = s.error or step_message(s.step) or f"did not finish: {ended}"
            repo.update_step(run_id, s.step, status=STEP_FAILED, error=error, ended_at=utcnow())
            if s.run_id is not None and ws.store.runs.get(s.run_id).status == RUN_RUNNING:
                ws.store.runs.finish(s.run_id, RUN_FAILED, error)
            failed[s.step] = error
        elif s.status == STEP_FAILED:
            failed[s.step] = s.error or "failed"
        elif s.status == STEP_PENDING:
            upstream_failed = bool(ancestors.get(s.step, set()) & set(failed))
            reason = "an upstream step failed" if upstream_failed else f"not run: {ended}"
            repo.update_step(run_id, s.step, status=STEP_SKIPPED, error=reason)
    all_done = all(s.status in STEP_DONE for s in repo.get(run_id).steps)
    if succeeded and all_done:
        status, summary = RUN_FINISHED, None
    else:
        status = RUN_FAILED
        summary = "; ".join(f"step {n!r} failed: {e}" for n, e in failed.items()) or (
            platform_message or ended
        )
    repo.finish_run(run_id, status, summary)
    ws.store.runs.finish(run_id, status, summary)
    return status, summary


def ancestors_of(pipeline_file: str, pipeline: str | None) -> dict[str, set[str]]:
    """Each step's upstream steps, transitively; empty when the pipeline no longer loads (the
    exit handler must still close the records)."""
    try:
        graph = build_graph(load_pipeline(Path(pipeline_file), pipeline))
    except ModelyardError:
        return {}
    result: dict[str, set[str]] = {}
    for name in graph.order:  # topological: upstream steps are done first
        node = graph.nodes[name]
        result[name] = set(node.upstream).union(*(result[u] for u in node.upstream))
    return result


def _failed_nodes(text: str) -> list[Mapping[str, Any]]:
    """``{{workflow.failures}}``: a JSON list, which newer Argo versions hand over once more
    quoted as a string (and ``null`` when nothing failed). Best effort: it only adds detail."""
    value: Any = text
    for _ in range(2):
        if not isinstance(value, str):
            break
        try:
            value = json.loads(value)
        except ValueError:
            return []
    if not isinstance(value, list):
        return []
    return [node for node in value if isinstance(node, Mapping)]


def _messages_by_template(failures: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """The message of each failed template's last pod (e.g. ``OOMKilled (exit code 137)``). A
    retried step's pods are ``task(0)``, ``task(1)``…; Argo lists the retry node itself too,
    whose ``No more retries left`` says less."""

    def rank(node: Mapping[str, Any]) -> tuple[bool, int]:
        found = _RETRY_SUFFIX.search(str(node.get("displayName", "")))
        return (found is not None, int(found.group(1)) if found else 0)

    messages: dict[str, str] = {}
    for node in sorted(failures, key=rank):
        template, message = node.get("templateName"), node.get("message")
        if isinstance(template, str) and isinstance(message, str) and message:
            messages[template] = message
    return messages


def _first_message(failures: Sequence[Mapping[str, Any]]) -> str | None:
    for node in failures:
        if node.get("message"):
            return f"{node.get('displayName') or node.get('templateName')}: {node['message']}"
    return None


@contextmanager
def _keep_alive(ws: Workspace, run_id: str | None) -> Iterator[None]:
    """Heartbeats for the pipeline's tracked run while a step runs: no process lives as long
    as the workflow does, so without them the run would read as ``lost`` while it works."""
    if run_id is None:
        yield
        return
    from modelyard.tracking.settings import TrackingSettings

    interval = TrackingSettings.of(ws).heartbeat_interval_s
    stop = threading.Event()

    def beat() -> None:
        while True:
            try:
                ws.store.runs.heartbeat(run_id)
            except Exception:  # the store hiccuped: the next beat may succeed
                log.warning("heartbeat of pipeline run %s failed", run_id, exc_info=True)
            if stop.wait(interval):
                return

    thread = threading.Thread(target=beat, name=f"modelyard-pipeline-{run_id[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _exists(get: Any) -> bool:
    try:
        get()
    except NotFound:
        return False
    return True


def _text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"
