"""The orchestrator: runs a pipeline's steps in DAG order and records everything.

Outputs are *published* (recorded in the store, offered to downstream steps and to the cache)
only after a step's worker reported success; a failed, killed or timed-out step publishes
nothing, its downstream steps are skipped, and ``resume`` later re-runs only the steps that did
not finish. Every executed step is a tracked run, child of the pipeline's tracked run.
"""

from __future__ import annotations

import contextvars
import json
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidParameter, ModelyardError
from modelyard.pipeline.cache import cache_key, code_digest, environment_digest
from modelyard.pipeline.execute import TASK_FORMAT
from modelyard.pipeline.graph import Graph, build_graph
from modelyard.pipeline.loader import load_pipeline
from modelyard.pipeline.params import resolve_params
from modelyard.pipeline.reads import read_digests
from modelyard.pipeline.runners.base import Execution, Runner
from modelyard.pipeline.serializers import StoredValue, dump
from modelyard.pipeline.step_images import step_environments
from modelyard.store.pipeline_entities import (
    STEP_CACHED,
    STEP_DONE,
    STEP_FAILED,
    STEP_FINISHED,
    STEP_REUSED,
    STEP_RUNNING,
    STEP_SKIPPED,
    PipelineRun,
    PipelineStep,
)
from modelyard.store.schema import utcnow

if TYPE_CHECKING:
    from modelyard.store.protocols import PipelineStore
    from modelyard.tracking.run import ActiveRun
    from modelyard.workspace import Workspace

RUN_FINISHED = "finished"
RUN_FAILED = "failed"
_LOG_TAIL_LINES = 15


@dataclass(frozen=True)
class StepEvent:
    """What the orchestrator reports as steps start and end (the CLI prints these)."""

    step: str
    status: str  # running | finished | cached | reused | failed | skipped | retrying
    duration_s: float | None = None
    error: str | None = None
    attempt: int = 1


EventHandler = Callable[[StepEvent], None]


@dataclass
class _Outcome:
    status: str
    outputs: dict[str, StoredValue] = field(default_factory=dict)
    error: str | None = None


RESUMABLE_RUNNERS = ("local", "in-process", "docker")


def make_runner(name: str, workspace: Workspace) -> Runner:
    """A runner by its command-line name."""
    from modelyard.pipeline.runners.local import InProcessRunner, LocalRunner

    if name == "local":
        return LocalRunner()
    if name == "in-process":
        return InProcessRunner()
    if name == "docker":
        import importlib

        # The docker runner (and its image machinery) is optional and imported only here.
        docker = importlib.import_module("modelyard.pipeline.runners.docker")
        runner: Runner = docker.DockerRunner.from_workspace(workspace)
        return runner
    raise InvalidParameter(f"unknown runner {name!r} (choose local, in-process or docker)")


def run_pipeline(
    path: Path,
    *,
    params: Mapping[str, Any] | None = None,
    workspace: Workspace | None = None,
    jobs: int = 1,
    use_cache: bool = True,
    runner: Runner | None = None,
    pipeline_name: str | None = None,
    on_event: EventHandler | None = None,
) -> PipelineRun:
    """Run the pipeline defined in ``path`` and return its record (check ``.status``).

    Definition errors and bad parameters raise before anything runs; step failures do not
    raise: they are in the returned run, as they are in the store."""
    from modelyard.workspace import resolve

    ws = resolve(workspace)
    graph = build_graph(load_pipeline(path, pipeline_name))
    values = resolve_params(graph, params)
    return _Orchestrator(ws, graph, path.resolve(), values, jobs, use_cache, runner, on_event).run()


def resume_pipeline(
    run_id: str,
    *,
    workspace: Workspace | None = None,
    jobs: int = 1,
    use_cache: bool = True,
    runner: Runner | None = None,
    on_event: EventHandler | None = None,
) -> PipelineRun:
    """A new pipeline run with the same file and parameters as ``run_id`` that takes over the
    outputs of every step that finished there and runs only the rest. Without ``runner`` it
    runs where the original ran (local, docker, in-process; a run of a compiled Argo or
    Kubeflow pipeline resumes in local subprocesses)."""
    from modelyard.workspace import resolve

    ws = resolve(workspace)
    old = ws.store.pipelines.get(run_id)
    if runner is None:
        runner = make_runner(old.runner if old.runner in RESUMABLE_RUNNERS else "local", ws)
    path = Path(old.pipeline_file)
    graph = build_graph(load_pipeline(path, old.pipeline))
    values = resolve_params(graph, old.params)
    reused = {s.step: s for s in old.steps if s.status in STEP_DONE and s.step in graph.nodes}
    orchestrator = _Orchestrator(ws, graph, path, values, jobs, use_cache, runner, on_event)
    return orchestrator.run(resumed_from=old.id, reused=reused)


def replay_pipeline(
    run_id: str,
    step: str,
    *,
    path: Path,
    params: Mapping[str, Any] | None = None,
    workspace: Workspace | None = None,
    runner: Runner | None = None,
    on_event: EventHandler | None = None,
) -> PipelineRun:
    """A new run of ``step`` as it ran in pipeline run ``run_id``, from the pipeline file
    ``path`` (the same pipeline at the recorded commit, ``modelyard reproduce``'s worktree).

    Only ``step`` and the steps upstream of it run. Of those, a step that published nothing but
    dataset versions is taken over from ``run_id`` (the data, pinned by digest, as provenance
    records it); every other one runs again, past the cache. ``params`` override the recorded
    parameter values."""
    from modelyard.errors import NotFound
    from modelyard.workspace import resolve

    ws = resolve(workspace)
    old = ws.store.pipelines.get(run_id)
    graph = build_graph(load_pipeline(path, old.pipeline))
    if step not in graph.nodes:
        raise NotFound(f"pipeline {old.pipeline!r} in {path} has no step {step!r}")
    needed = {step}
    frontier = [step]
    while frontier:
        for up in graph.nodes[frontier.pop()].upstream - needed:
            needed.add(up)
            frontier.append(up)
    values = resolve_params(graph, {**old.params, **(params or {})})
    reused = {
        s.step: s
        for s in old.steps
        if s.step in needed
        and s.status in STEP_DONE
        and s.outputs
        and all(v.get("serializer") == "dataset" for v in s.outputs.values())
    }
    orchestrator = _Orchestrator(
        ws, graph, path.resolve(), values, 1, False, runner, on_event, only=needed
    )
    return orchestrator.run(reused=reused)


class _Orchestrator:
    def __init__(
        self,
        ws: Workspace,
        graph: Graph,
        path: Path,
        params: dict[str, Any],
        jobs: int,
        use_cache: bool,
        runner: Runner | None,
        on_event: EventHandler | None,
        only: set[str] | None = None,
    ) -> None:
        from modelyard.pipeline.runners.local import LocalRunner

        if jobs < 1:
            raise InvalidParameter("--jobs must be at least 1")
        self.ws = ws
        self.graph = graph
        self.path = path
        self.params = params
        self.jobs = jobs
        self.use_cache = use_cache
        self.runner: Runner = runner or LocalRunner()
        self.on_event = on_event or (lambda _e: None)
        self.name = graph.pipeline.name
        self.order = [n for n in graph.order if only is None or n in only]
        self.environments = step_environments(ws, graph)
        self.run_id = ""
        self.run_dir = Path()
        self.published: dict[str, dict[str, StoredValue]] = {}

    # -- the whole run -------------------------------------------------------------------------
    def run(
        self, *, resumed_from: str | None = None, reused: Mapping[str, PipelineStep] | None = None
    ) -> PipelineRun:
        from modelyard.tracking import start_run

        reused = reused or {}
        self.runner.prepare(self.ws.root, self.path)
        tags = {"modelyard.kind": "pipeline", "modelyard.runner": self.runner.name}
        if resumed_from:
            tags["modelyard.resumed_from"] = resumed_from
        active = start_run(
            self.name, pipeline=self.name, params=self.params, tags=tags, workspace=self.ws
        )
        self.run_id = active.id
        self.run_dir = self.ws.state_dir / "pipeline-runs" / self.run_id
        repo = self.ws.store.pipelines
        try:
            return self._run(active, repo, resumed_from, reused)
        finally:
            close = getattr(self.runner, "close", None)
            if callable(close):
                close()  # warm workers are per pipeline run

    def _run(
        self,
        active: ActiveRun,
        repo: PipelineStore,
        resumed_from: str | None,
        reused: Mapping[str, PipelineStep],
    ) -> PipelineRun:
        try:
            repo.create_run(
                self.run_id,
                pipeline=self.name,
                pipeline_file=str(self.path),
                params=self.params,
                runner=self.runner.name,
                steps=self.order,
                resumed_from=resumed_from,
            )
            failures = self._schedule(reused)
        except BaseException as exc:
            crash = f"{type(exc).__name__}: {exc}"
            repo.finish_run(self.run_id, RUN_FAILED, crash)
            active.end(RUN_FAILED, crash)
            raise
        error = "; ".join(f"step {n!r} failed: {e}" for n, e in failures.items())
        status = RUN_FAILED if failures else RUN_FINISHED
        repo.finish_run(self.run_id, status, error or None)
        active.end(status, error or None)
        return repo.get(self.run_id)

    def _schedule(self, reused: Mapping[str, PipelineStep]) -> dict[str, str]:
        """Run everything runnable, ``jobs`` at a time; returns ``{failed step: error}``."""
        done: set[str] = set()
        failures: dict[str, str] = {}
        skipped: set[str] = set()
        pending = list(self.order)
        running: dict[Future[_Outcome], str] = {}
        with ThreadPoolExecutor(max_workers=self.jobs, thread_name_prefix="step") as pool:
            while pending or running:
                for name in list(pending):
                    node = self.graph.nodes[name]
                    if node.upstream & (set(failures) | skipped):
                        pending.remove(name)
                        skipped.add(name)
                        self._skip(name)
                    elif node.upstream <= done and len(running) < self.jobs:
                        pending.remove(name)
                        # Each step sees this thread's context (the current workspace, a
                        # reproduce's replay), not the pool thread's empty one.
                        context = contextvars.copy_context()
                        job = pool.submit(context.run, self._execute, name, reused.get(name))
                        running[job] = name
                if not running:
                    continue
                finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
                for future in finished:
                    name = running.pop(future)
                    outcome = future.result()
                    if outcome.status in STEP_DONE:
                        self.published[name] = outcome.outputs
                        done.add(name)
                    else:
                        failures[name] = outcome.error or "failed"
        return failures

    def _skip(self, name: str) -> None:
        self.ws.store.pipelines.update_step(
            self.run_id, name, status=STEP_SKIPPED, error="an upstream step failed"
        )
        self.on_event(StepEvent(name, STEP_SKIPPED))

    # -- one step ------------------------------------------------------------------------------
    def _execute(self, name: str, reused: PipelineStep | None) -> _Outcome:
        try:
            return self._execute_step(name, reused)
        except ModelyardError as exc:
            # Orchestration trouble for this step (an unknown dataset, a store error):
            # the step fails, the rest of the pipeline carries on where it can.
            error = exc.message
            self.ws.store.pipelines.update_step(
                self.run_id, name, status=STEP_FAILED, error=error, ended_at=utcnow()
            )
            self.on_event(StepEvent(name, STEP_FAILED, error=error))
            return _Outcome(STEP_FAILED, error=error)

    def _execute_step(self, name: str, reused: PipelineStep | None) -> _Outcome:
        repo = self.ws.store.pipelines
        node = self.graph.nodes[name]
        spec = node.spec
        if reused is not None:
            outputs = {k: StoredValue.from_json(v) for k, v in (reused.outputs or {}).items()}
            self._finish_without_running(name, STEP_REUSED, outputs, reused.run_id, None)
            return _Outcome(STEP_REUSED, outputs)

        started = utcnow()
        repo.update_step(self.run_id, name, status=STEP_RUNNING, started_at=started)
        inputs = {arg: self.published[producer][arg] for arg, producer in node.inputs.items()}
        for arg, ref in node.datasets.items():
            from modelyard.tracking import resolve_dataset_version

            version = resolve_dataset_version(self.ws, ref)
            inputs[arg] = dump(
                version, step=name, output=arg, artifacts=self.ws.artifacts, allow_pickle=False
            )
        step_params = {p: self.params[p] for p in node.params}
        key = cache_key(
            pipeline=self.name,
            step=spec,
            code_digest=code_digest(spec.fn, self.ws.root),
            params=step_params,
            inputs={k: v.digest for k, v in inputs.items()},
            environment=environment_digest(),
            reads=read_digests(self.ws, spec.reads, step_params) if spec.reads else None,
        )
        if self.use_cache and spec.cache:
            hit = repo.cache_get(key)
            if hit is not None:
                outputs = {k: StoredValue.from_json(v) for k, v in hit[0].items()}
                if all(self.ws.artifacts.exists(v.digest) for v in outputs.values()):
                    self._finish_without_running(name, STEP_CACHED, outputs, hit[1], key)
                    return _Outcome(STEP_CACHED, outputs)
        return self._run_attempts(name, inputs, step_params, key)

    def _finish_without_running(
        self,
        name: str,
        status: str,
        outputs: Mapping[str, StoredValue],
        run_id: str | None,
        key: str | None,
    ) -> None:
        """A cached or reused step: the run that produced the outputs joins this pipeline."""
        now = utcnow()
        if run_id is not None:
            self.ws.store.lineage.add("run", self.run_id, "run", run_id, "contains")
        self.ws.store.pipelines.update_step(
            self.run_id,
            name,
            status=status,
            run_id=run_id,
            cache_key=key,
            outputs={k: v.to_json() for k, v in outputs.items()},
            started_at=now,
            ended_at=now,
        )
        self.on_event(StepEvent(name, status, 0.0))

    def _run_attempts(
        self, name: str, inputs: Mapping[str, StoredValue], params: Mapping[str, Any], key: str
    ) -> _Outcome:
        from modelyard.tracking import start_run

        spec = self.graph.nodes[name].spec
        repo = self.ws.store.pipelines
        begun = time.monotonic()
        active = start_run(
            name,
            pipeline=self.name,
            parent_id=self.run_id,
            params=params,
            tags={"modelyard.step": name, "modelyard.cache_key": key},
            workspace=self.ws,
        )
        repo.update_step(self.run_id, name, run_id=active.id, cache_key=key)
        for _arg, value in inputs.items():
            self._record_input(active.id, value)
        self.on_event(StepEvent(name, STEP_RUNNING))
        error = "not run"
        attempts = spec.retries + 1
        try:
            for attempt in range(1, attempts + 1):
                repo.update_step(self.run_id, name, attempts=attempt)
                result, error = self._attempt(name, active.id, attempt, inputs, params)
                if result is not None:
                    outputs = {k: StoredValue.from_json(v) for k, v in result.items()}
                    self._publish(name, active.id, outputs, key)
                    active.end(RUN_FINISHED)
                    duration = time.monotonic() - begun
                    self.on_event(StepEvent(name, STEP_FINISHED, duration, attempt=attempt))
                    return _Outcome(STEP_FINISHED, outputs)
                if attempt < attempts:
                    self.on_event(StepEvent(name, "retrying", error=error, attempt=attempt))
                    time.sleep(spec.retry_delay * 2 ** (attempt - 1))
        except BaseException as exc:
            # The runner or publishing failed (no engine, a store error): the step's tracked
            # run must not stay "running" forever.
            if not active.ended:
                active.end(RUN_FAILED, f"{type(exc).__name__}: {exc}")
            raise
        active.end(RUN_FAILED, error)
        repo.update_step(self.run_id, name, status=STEP_FAILED, error=error, ended_at=utcnow())
        self.on_event(StepEvent(name, STEP_FAILED, time.monotonic() - begun, error, attempts))
        return _Outcome(STEP_FAILED, error=error)

    def _attempt(
        self,
        name: str,
        step_run_id: str,
        attempt: int,
        inputs: Mapping[str, StoredValue],
        params: Mapping[str, Any],
    ) -> tuple[dict[str, Any] | None, str]:
        """One execution through the runner: ``(outputs, "")`` or ``(None, error)``."""
        spec = self.graph.nodes[name].spec
        scratch = self.run_dir / name / f"attempt-{attempt}"
        scratch.mkdir(parents=True, exist_ok=True)
        result_path = scratch / "result.json"
        task = {
            "format": TASK_FORMAT,
            "workspace_root": str(self.ws.root),
            "store_url": self.ws.settings.store_url,
            "artifact_root": str(self.ws.settings.artifact_root),
            "pipeline_file": str(self.path),
            "pipeline": self.name,
            "step": name,
            "params": dict(params),
            "inputs": {k: v.to_json() for k, v in inputs.items()},
            "run_id": step_run_id,
            "pipeline_run_id": self.run_id,
            "attempt": attempt,
            "scratch_dir": str(scratch),
            "result_path": str(result_path),
        }
        env = self.environments[name]
        if not env.shared:  # a step image of its own (the docker runner reads it)
            task["environment"] = {"image": env.image, "requirements": list(env.requirements)}
        task_path = scratch / "task.json"
        task_path.write_text(json.dumps(task, indent=1), encoding="utf-8")
        execution = self.runner.execute(task_path, timeout=spec.timeout, log_path=scratch / "log")
        return _read_result(result_path, execution, spec.timeout)

    def _record_input(self, step_run_id: str, value: StoredValue) -> None:
        record_step_input(self.ws, step_run_id, value)

    def _publish(
        self, name: str, step_run_id: str, outputs: Mapping[str, StoredValue], key: str
    ) -> None:
        """Record a successful step's outputs: lineage, run artifacts, cache, step row."""
        store = self.ws.store
        record_step_outputs(self.ws, step_run_id, outputs)
        as_json = {k: v.to_json() for k, v in outputs.items()}
        store.pipelines.update_step(
            self.run_id, name, status=STEP_FINISHED, outputs=as_json, ended_at=utcnow()
        )
        # Last: a cache entry exists only for a step whose every record above was written.
        if self.graph.nodes[name].spec.cache:
            store.pipelines.cache_put(
                key, pipeline=self.name, step=name, outputs=as_json, run_id=step_run_id
            )


def record_step_input(ws: Workspace, step_run_id: str, value: StoredValue) -> None:
    """The lineage arrow from what a step read to its run (shared with the Argo worker)."""
    if value.serializer == "dataset":
        ref = json.loads(ws.artifacts.get_bytes(value.digest))["ref"]
        ws.store.lineage.add("dataset_version", ref, "run", step_run_id, "input")
    else:
        ws.store.lineage.add("artifact", value.digest, "run", step_run_id, "input")


def record_step_outputs(
    ws: Workspace, step_run_id: str, outputs: Mapping[str, StoredValue]
) -> None:
    """A successful step's outputs as lineage and as artifacts of its run (shared with the
    Argo worker, so a step looks the same whichever way it ran)."""
    store = ws.store
    for out, value in outputs.items():
        if value.serializer == "dataset":
            ref = json.loads(ws.artifacts.get_bytes(value.digest))["ref"]
            store.lineage.add("run", step_run_id, "dataset_version", ref, "output")
        else:
            store.lineage.add("run", step_run_id, "artifact", value.digest, "output")
            kind = "directory" if value.serializer == "dir" else "file"
            size = 0 if kind == "directory" else ws.artifacts.size(value.digest)
            store.runs.add_artifact(step_run_id, f"outputs/{out}", value.digest, kind, size)


def _read_result(
    result_path: Path, execution: Execution, timeout: float | None
) -> tuple[dict[str, Any] | None, str]:
    if execution.timed_out:
        return None, f"timed out after {timeout:g} s and was killed{_log_hint(execution)}"
    doc: dict[str, Any] | None = None
    if result_path.is_file():
        try:
            loaded = json.loads(result_path.read_text(encoding="utf-8"))
            doc = loaded if isinstance(loaded, dict) else None
        except (OSError, ValueError):
            doc = None
    if doc is not None and "error" in doc:
        err = doc["error"]
        return None, f"{err.get('type', 'Error')}: {err.get('message', '')}"
    if doc is not None and execution.returncode == 0:
        return dict(doc.get("outputs", {})), ""
    code = execution.returncode
    if code is not None and code < 0:
        import signal

        try:
            signame = signal.Signals(-code).name
        except ValueError:
            signame = f"signal {-code}"
        return None, f"worker was killed by {signame}{_log_hint(execution)}"
    return None, f"worker exited with status {code} without a result{_log_hint(execution)}"


def _log_hint(execution: Execution) -> str:
    if execution.log_path is None or not execution.log_path.is_file():
        return ""
    lines = execution.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
    tail = "\n".join(lines[-_LOG_TAIL_LINES:])
    return f" (log: {execution.log_path})" + (f"\n{tail}" if tail.strip() else "")
