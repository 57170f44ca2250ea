"""A tracked run: parameters, metrics, tags, inputs and outputs, recorded as it executes.

``start_run`` writes the run row with everything needed to reproduce it (git commit and diff,
Python version, exact package versions, host, user) before user code runs. While the run is
alive a daemon thread sends a heartbeat; a process killed with SIGKILL cannot mark its run
failed, so readers call the run ``lost`` once its heartbeat is stale.

Metrics are buffered and written in bulk — one INSERT for up to ``flush_every`` points (1,000),
and whatever is buffered every ``flush_interval_s`` (0.5 s) and at the end — because a training
loop logging per batch would otherwise spend its time in database round-trips (and, on SQLite,
in the write lock). So a SIGKILL loses only points not yet written: those logged in the last
``flush_interval_s`` (plus the time one write takes), never more than ``flush_every`` of them
plus one write in flight. ``flush()`` writes at once, for a caller that must not lose any.

Metric values must be finite: NaN and ±inf are rejected when logged with
:class:`~modelyard.errors.InvalidParameter`. SQLite cannot store NaN (it becomes NULL), so
accepting them would make the two backends disagree; a diverging loss is better reported as a
failed run or a tag.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from modelyard import validation
from modelyard.errors import InvalidParameter, NotFound, RunError
from modelyard.refs import validate_name
from modelyard.tracking.settings import TrackingSettings

if TYPE_CHECKING:
    from modelyard.store.data_entities import DatasetVersion
    from modelyard.store.tracking_entities import Run
    from modelyard.tracking.model_folder import LoggedModel
    from modelyard.workspace import Workspace

log = logging.getLogger(__name__)

RUN_FINISHED = "finished"
RUN_FAILED = "failed"
_END_STATUSES = (RUN_FINISHED, RUN_FAILED)
_MAX_KEY = 256
_RUN_ID = re.compile(r"[0-9a-f]{32}")

# Lineage node types and relations recorded by tracked runs.
NODE_RUN = "run"
NODE_DATASET_VERSION = "dataset_version"
NODE_ARTIFACT = "artifact"
REL_INPUT = "input"
REL_OUTPUT = "output"
REL_CONTAINS = "contains"


def start_run(
    name: str | None = None,
    *,
    pipeline: str | None = None,
    parent_id: str | None = None,
    params: Mapping[str, Any] | None = None,
    tags: Mapping[str, str] | None = None,
    workspace: Workspace | None = None,
    heartbeat_interval_s: float | None = None,
    flush_every: int | None = None,
    run_id: str | None = None,
) -> ActiveRun:
    """Start a run and return it; use it as a context manager so it always ends::

        with modelyard.start_run(name="train", params={"lr": 0.1}) as run:
            run.log_metric("loss", 0.3)

    ``parent_id`` makes this a step of a parent run (a pipeline run); the parent gets a
    ``contains`` lineage arrow to it. Heartbeat and flush settings default to the workspace's
    ``[tracking]`` config. ``run_id`` (32 hex digits) is for an orchestrator that must name the
    run before it exists, such as an Argo workflow whose every pod derives it from the
    workflow's uid; by default the run gets a fresh id.
    """
    from modelyard.tracking.environment import (
        capture_code_version,
        git_toplevel,
        host_name,
        python_version,
        save_environment,
        user_name,
    )
    from modelyard.tracking.replay import REPRODUCES_TAG, SOURCE_TAG, capture_source, current_replay
    from modelyard.workspace import resolve

    if heartbeat_interval_s is not None and not heartbeat_interval_s > 0:
        raise InvalidParameter("heartbeat_interval_s must be positive")
    if flush_every is not None and flush_every < 1:
        raise InvalidParameter("flush_every must be at least 1")
    if name is not None:
        _check_text(name, "run name")
    if pipeline is not None:
        _check_text(pipeline, "pipeline name")
    if run_id is not None and not _RUN_ID.fullmatch(run_id):
        raise InvalidParameter(f"a run id is 32 lowercase hex digits, not {run_id!r}")

    ws = resolve(workspace)
    try:
        base = TrackingSettings.of(ws)
        settings = TrackingSettings(
            heartbeat_interval_s or base.heartbeat_interval_s,
            flush_every or base.flush_every,
            base.flush_interval_s,
        )
        if parent_id is not None:
            parent_id = ws.store.runs.resolve_id(parent_id)
        replay = current_replay()
        code_folder = replay.code_folder if replay and replay.code_folder else ws.root
        code = capture_code_version(code_folder, ws)
        tags = dict(tags or {})
        if replay is not None:
            tags[REPRODUCES_TAG] = replay.of_run
        if parent_id is None and pipeline is None and code.commit is not None:
            top = git_toplevel(code_folder)
            source = capture_source(top) if top is not None else None
            if source is not None:
                tags.setdefault(SOURCE_TAG, source.to_json())
        row = ws.store.runs.create(
            run_id or uuid4().hex,
            name=name,
            pipeline=pipeline,
            parent_id=parent_id,
            git_commit=code.commit,
            git_dirty=code.dirty,
            git_diff_digest=code.diff_digest,
            python_version=python_version(),
            environment_digest=save_environment(ws),
            host=host_name(),
            user=user_name(),
        )
    except BaseException:
        if workspace is None:  # we opened it, nobody else will close it
            ws.close()
        raise
    run = ActiveRun(ws, row, settings, owns_workspace=workspace is None)
    if replay is not None:
        replay.started.append(run.id)
    try:
        if parent_id is not None:
            ws.store.lineage.add(NODE_RUN, parent_id, NODE_RUN, run.id, REL_CONTAINS)
        if params:
            run.log_params(params)
        if tags:
            run.set_tags(tags)
    except BaseException as exc:
        run.end(RUN_FAILED, _describe(exc))
        raise
    run._start_heartbeat()
    return run


class ActiveRun:
    """A run being recorded. Thread-safe: the heartbeat thread flushes the metric buffer
    concurrently with the caller logging into it."""

    def __init__(
        self,
        workspace: Workspace,
        run: Run,
        settings: TrackingSettings,
        *,
        owns_workspace: bool = False,
    ) -> None:
        self.workspace = workspace
        self._owns_workspace = owns_workspace  # found by start_run: close its store at the end
        self.id: str = run.id
        self.name = run.name
        self.settings = settings
        self._buffer: list[tuple[str, float, int, datetime]] = []
        self._next_step: dict[str, int] = {}
        self._buffer_lock = threading.Lock()
        self._flush_lock = threading.Lock()  # one writer of metrics at a time, in order
        self._ended = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __repr__(self) -> str:
        state = "ended" if self._ended else "running"
        return f"ActiveRun({self.id!r}, name={self.name!r}, {state})"

    # -- context manager ----------------------------------------------------------------------
    def __enter__(self) -> ActiveRun:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._ended:
            return
        if exc is None:
            self.end()
        else:
            self.end(RUN_FAILED, _describe(exc))

    # -- parameters and tags ------------------------------------------------------------------
    def log_param(self, key: str, value: Any) -> None:
        self.log_params({key: value})

    def log_params(self, params: Mapping[str, Any]) -> None:
        """Values are stored as ``str(value)``. Parameters are write-once: logging a different
        value for a key already logged raises RunError."""
        self._check_live()
        clean = {_check_text(k, "parameter name"): _param_text(v) for k, v in params.items()}
        self.workspace.store.runs.log_params(self.id, clean)

    def set_tag(self, key: str, value: str) -> None:
        self.set_tags({key: value})

    def set_tags(self, tags: Mapping[str, str]) -> None:
        """Tags, unlike parameters, may be changed: the last value wins."""
        self._check_live()
        clean = {_check_text(k, "tag name"): str(v) for k, v in tags.items()}
        self.workspace.store.runs.set_tags(self.id, clean)

    # -- metrics ------------------------------------------------------------------------------
    def log_metric(self, key: str, value: float, step: int | None = None) -> None:
        """Buffer one point. Without ``step`` each key counts 0, 1, 2… on its own; an explicit
        step moves that counter past it."""
        self.log_metrics({key: value}, step)

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._check_live()
        if step is not None:
            validation.step(step)
        checked = [(_check_text(k, "metric name"), _metric_value(k, v)) for k, v in metrics.items()]
        now = datetime.now(UTC)
        with self._buffer_lock:
            # Checked again under the lock end() takes: a point is either in the final flush or
            # refused, never silently dropped by a thread racing end().
            self._check_live()
            for key, value in checked:
                used = self._next_step.get(key, 0) if step is None else step
                self._next_step[key] = max(self._next_step.get(key, 0), used + 1)
                self._buffer.append((key, value, used, now))
            full = len(self._buffer) >= self.settings.flush_every
        if full:
            self.flush()

    def flush(self) -> None:
        """Write buffered metric points now (also done every ``flush_interval_s`` and at the
        end)."""
        with self._flush_lock:
            with self._buffer_lock:
                points, self._buffer = self._buffer, []
            if not points:
                return
            try:
                self.workspace.store.runs.log_metrics(self.id, points)
            except BaseException:
                with self._buffer_lock:  # keep them for the next attempt, in order
                    self._buffer[:0] = points
                raise

    # -- inputs and outputs -------------------------------------------------------------------
    def use_dataset(self, ref: str) -> DatasetVersion:
        """Resolve a dataset reference (``name``, ``name@3``, ``name@sha256:…``) and record
        that this run read it."""
        self._check_live()
        version = resolve_dataset_version(self.workspace, ref)
        self.workspace.store.lineage.add(
            NODE_DATASET_VERSION, version.ref, NODE_RUN, self.id, REL_INPUT
        )
        return version

    def log_artifact(self, path: str | Path, name: str | None = None) -> str:
        """Store a file or a folder (content-addressed) as an output of this run; returns its
        digest. ``name`` defaults to the file or folder name; logging a name again replaces
        the earlier artifact of that name."""
        self._check_live()
        source = Path(path)
        artifact_name = _artifact_name(name if name is not None else source.name)
        store = self.workspace.artifacts
        if source.is_file():
            digest = store.put_file(source)
            kind, size = "file", source.stat().st_size
        elif source.is_dir():
            digest, manifest = store.put_dir(source)
            kind, size = "directory", manifest.size
        else:
            raise NotFound(f"cannot log artifact {str(source)!r}: no such file or folder")
        self.workspace.store.runs.add_artifact(self.id, artifact_name, digest, kind, size)
        self.workspace.store.lineage.add(NODE_RUN, self.id, NODE_ARTIFACT, digest, REL_OUTPUT)
        return digest

    def add_output(self, node_type: str, node_id: str) -> None:
        """Record that this run produced ``node_id`` (a dataset version, a model version…)."""
        self._check_live()
        _check_text(node_type, "node type")
        _check_text(node_id, "node id")
        self.workspace.store.lineage.add(NODE_RUN, self.id, node_type, node_id, REL_OUTPUT)

    def log_model(
        self,
        model: Any,
        name: str = "model",
        *,
        input_example: Any = None,
        signature: Any = None,
        trusted_pickle: bool = False,
    ) -> LoggedModel:
        """Save ``model`` with :func:`modelyard.flavors.save_model` (its flavor, signature and
        requirements) and log the folder as the run artifact ``name``: content-addressed,
        recorded on the run, with a lineage arrow. The folder is written to a temporary place
        first, so nothing half-saved is ever logged."""
        import tempfile

        from modelyard.flavors import save_model
        from modelyard.tracking.model_folder import MODEL_FILE, LoggedModel, parse_model_meta

        self._check_live()
        tmp_root = self.workspace.state_dir / "tmp"
        tmp_root.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=tmp_root, prefix="log-model-") as tmp:
            folder = Path(tmp) / "model"
            save_model(
                model,
                folder,
                input_example=input_example,
                signature=signature,
                trusted_pickle=trusted_pickle,
            )
            meta = parse_model_meta((folder / MODEL_FILE).read_bytes(), f"model {name!r}")
            digest = self.log_artifact(folder, name)
        return LoggedModel(self.id, name, digest, meta.flavor, meta.signature, meta.requirements)

    # -- lifecycle ----------------------------------------------------------------------------
    def end(self, status: str = RUN_FINISHED, error: str | None = None) -> None:
        """Flush metrics, stop the heartbeat and record the final status. Ending twice is an
        error: the first end is the truth."""
        if status not in _END_STATUSES:
            raise InvalidParameter(
                f"a run ends as one of {', '.join(_END_STATUSES)}, not {status!r}"
            )
        self._stop_recording()
        try:
            try:
                self.flush()
            except Exception as exc:
                if status == RUN_FINISHED:
                    status, error = RUN_FAILED, f"metrics could not be saved: {_describe(exc)}"
                self.workspace.store.runs.finish(self.id, status, error)
                raise
            self.workspace.store.runs.finish(self.id, status, error)
        finally:
            if self._owns_workspace:
                self.workspace.close()

    def detach(self) -> None:
        """Stop recording from this process but leave the run open for another process to
        end: an Argo workflow's first pod starts the pipeline run, its exit handler ends it."""
        self._stop_recording()
        try:
            self.flush()
        finally:
            if self._owns_workspace:
                self.workspace.close()

    def _stop_recording(self) -> None:
        """No more logging from this process, and the heartbeat stopped (an ended run must not
        look alive, nor a detached one be kept alive by a process that let go of it)."""
        with self._buffer_lock:
            self._check_live()
            self._ended = True
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()

    @property
    def ended(self) -> bool:
        return self._ended

    def _check_live(self) -> None:
        if self._ended:
            raise RunError(f"run {self.id} has ended; start a new run to log more")

    def _start_heartbeat(self) -> None:
        self._thread = threading.Thread(
            target=self._beat, name=f"modelyard-heartbeat-{self.id[:8]}", daemon=True
        )
        self._thread.start()

    def _beat(self) -> None:
        """Flush every ``flush_interval_s``; heartbeat every ``heartbeat_interval_s``."""
        settings = self.settings
        last_beat = time.monotonic()
        while not self._stop.wait(min(settings.flush_interval_s, settings.heartbeat_interval_s)):
            beat = time.monotonic() - last_beat >= settings.heartbeat_interval_s
            try:
                self.flush()
                if beat:
                    self.workspace.store.runs.heartbeat(self.id)
                    last_beat = time.monotonic()
            except Exception:  # the store hiccuped: keep beating, the next beat may succeed
                log.warning("heartbeat of run %s failed", self.id, exc_info=True)


def resolve_dataset_version(ws: Workspace, ref: str) -> DatasetVersion:
    """A dataset version from ``name``, ``name@latest``, ``name@N`` or ``name@sha256:…``."""
    from modelyard.errors import InvalidReference
    from modelyard.refs import Ref
    from modelyard.tracking.replay import current_replay

    replay = current_replay()
    if replay is not None:  # reproducing a run: the versions it read, not newer ones
        ref = replay.pin(ref)
    parsed = Ref.parse(ref, kind="dataset reference")
    if parsed.alias is not None:
        raise InvalidReference(
            f"dataset reference {ref!r}: datasets have no aliases; use a version number or digest"
        )
    return ws.store.datasets.get_version(parsed.name, parsed.version, digest=parsed.digest)


def _describe(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


def _check_text(value: str, what: str) -> str:
    return validation.text(value, what, _MAX_KEY)


def _param_text(value: Any) -> str:
    return validation.param_value(value)


def _metric_value(key: str, value: Any) -> float:
    return validation.metric_value(key, value)


def _artifact_name(name: str) -> str:
    """Artifact names may nest (``plots/roc.png``) but every segment must be a safe name: they
    become paths when a run's artifacts are exported."""
    segments = name.split("/")
    for segment in segments:
        validate_name(segment, "artifact name segment")
    return name
