"""Local runners: each step in its own process (the default), or in this process.

A process per step is what makes a crash survivable: a segfault, an ``os._exit`` or a SIGKILL
ends the worker, not the orchestrator, which then records the step as failed. The worker leads
its own session so a timeout can kill it together with any children it started.

By default those processes are *warm*: forked from a server that imported modelyard and the
pipeline's libraries once (see :mod:`.forkserver`), so a step starts in milliseconds instead of
an interpreter start plus its imports. ``LocalRunner(warm=False)`` (or
``MODELYARD_WARM_WORKERS=0``) starts ``python -m modelyard.pipeline.worker TASK`` afresh for
every step, as before.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
import weakref
from pathlib import Path
from typing import IO

from modelyard.pipeline.runners.base import WORKER_MODULE, Execution
from modelyard.pipeline.runners.forkserver import SERVER_MODULE

_READY_TIMEOUT_S = 300.0  # the preloads run on a loaded machine too


class LocalRunner:
    """Each step a child process of this one: forked from a warm server (default) or a fresh
    ``python -m modelyard.pipeline.worker TASK``."""

    name = "local"

    def __init__(self, python: str | None = None, *, warm: bool | None = None) -> None:
        self.python = python or sys.executable
        if warm is None:
            warm = os.environ.get("MODELYARD_WARM_WORKERS", "1").strip().lower() not in (
                "0",
                "false",
                "no",
            )
        self.warm = warm
        self._preload: list[str] = []
        self._server: _ForkServer | None = None
        self._lock = threading.Lock()

    def prepare(self, workspace_root: Path, pipeline_file: Path) -> None:
        """Note what the pipeline file imports; the server starts with the first step."""
        self._preload = third_party_imports(pipeline_file) if self.warm else []

    def close(self) -> None:
        """Stop the warm server (a later step starts a new one)."""
        with self._lock:
            server, self._server = self._server, None
        if server is not None:
            server.close()

    def execute(self, task_path: Path, *, timeout: float | None, log_path: Path) -> Execution:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        server = self._warm_server() if self.warm else None
        if server is None:
            return self._execute_fresh(task_path, timeout=timeout, log_path=log_path)
        return server.execute(task_path, timeout=timeout, log_path=log_path)

    def _warm_server(self) -> _ForkServer | None:
        with self._lock:
            if self._server is not None and not self._server.alive:
                self._server.close()
                self._server = None
            if self._server is None:
                try:
                    self._server = _ForkServer(self.python, self._preload)
                except OSError:
                    return None  # no server: fresh processes still work
            return self._server

    def _execute_fresh(
        self, task_path: Path, *, timeout: float | None, log_path: Path
    ) -> Execution:
        started = time.monotonic()
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


class _Pending:
    def __init__(self) -> None:
        self.pid: int | None = None
        self.exit: int | None = None
        self.lost = False
        self.started = threading.Event()
        self.ended = threading.Event()


class _ForkServer:
    """The parent's side of :mod:`.forkserver`: one server process, requests from any thread."""

    def __init__(self, python: str, preload: list[str]) -> None:
        self.proc = subprocess.Popen(
            [python, "-m", SERVER_MODULE, *preload],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        assert self.proc.stdin is not None
        assert self.proc.stdout is not None
        self._stdin: IO[bytes] = self.proc.stdin
        self._write_lock = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._next_id = 0
        self._ready = threading.Event()
        self._reader = threading.Thread(
            target=self._read, args=(self.proc.stdout,), daemon=True, name="forkserver"
        )
        self._reader.start()
        # Never leave the server behind, even when nobody calls close().
        self._finalizer = weakref.finalize(self, _stop, self.proc)
        if not self._ready.wait(_READY_TIMEOUT_S) or not self.alive:
            self.close()
            raise OSError("the warm worker server did not start")

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None and self._reader.is_alive()

    def execute(self, task_path: Path, *, timeout: float | None, log_path: Path) -> Execution:
        started = time.monotonic()
        pending = _Pending()
        with self._write_lock:
            self._next_id += 1
            request_id = self._next_id
            self._pending[request_id] = pending
            request = {
                "id": request_id,
                "task": str(task_path),
                "log": str(log_path),
                "cwd": os.getcwd(),
                "env": dict(os.environ),
            }
            try:
                self._stdin.write((json.dumps(request) + "\n").encode())
                self._stdin.flush()
            except OSError:
                pending.lost = True
                pending.ended.set()
        try:
            deadline = None if timeout is None else started + timeout
            while not pending.ended.wait(
                None if deadline is None else max(0.0, deadline - time.monotonic())
            ):
                if deadline is not None and time.monotonic() >= deadline:
                    self._kill(pending)
                    return Execution(None, True, time.monotonic() - started, log_path)
        except BaseException:  # Ctrl-C in the orchestrator: do not leave the step running
            self._kill(pending)
            raise
        finally:
            with self._write_lock:
                self._pending.pop(request_id, None)
        if pending.lost:
            with contextlib.suppress(OSError), log_path.open("a") as log:
                log.write("modelyard: the warm worker server stopped while this step ran\n")
            return Execution(None, False, time.monotonic() - started, log_path)
        return Execution(pending.exit, False, time.monotonic() - started, log_path)

    def _kill(self, pending: _Pending) -> None:
        """SIGKILL the step's whole session and wait until the server reaped it."""
        pending.started.wait(_READY_TIMEOUT_S)
        if pending.pid is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pending.pid, signal.SIGKILL)
        pending.ended.wait(_READY_TIMEOUT_S)

    def _read(self, stream: IO[bytes]) -> None:
        for line in stream:
            try:
                doc = json.loads(line)
            except ValueError:
                continue
            if doc.get("ready"):
                self._ready.set()
                continue
            with self._write_lock:
                pending = self._pending.get(int(doc.get("id", 0)))
            if pending is None:
                continue
            if "pid" in doc:
                pending.pid = int(doc["pid"])
                pending.started.set()
            if "exit" in doc:
                pending.exit = int(doc["exit"])
                pending.started.set()
                pending.ended.set()
        # EOF: the server is gone; every step still waiting has lost its process
        self._ready.set()
        with self._write_lock:
            waiting = list(self._pending.values())
        for pending in waiting:
            pending.lost = True
            pending.started.set()
            pending.ended.set()

    def close(self) -> None:
        self._finalizer()
        self._reader.join(timeout=10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Close the server's input (it finishes reaping and leaves), then make sure it is gone."""
    with contextlib.suppress(OSError):
        if proc.stdin is not None:
            proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def third_party_imports(pipeline_file: Path) -> list[str]:
    """The installed modules a pipeline file imports anywhere (at the top or in a step), for
    the warm server to preload. The project's own modules are left out: the steps import them
    fresh."""
    try:
        tree = ast.parse(pipeline_file.read_bytes())
    except (OSError, SyntaxError, ValueError):
        return []
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.append(node.module)
    project = pipeline_file.resolve().parent
    out: list[str] = []
    for name in dict.fromkeys(names):
        if _installed(name.partition(".")[0], project):
            out.append(name)
    return out


def _installed(top: str, project: Path) -> bool:
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    origin = spec.origin or next(iter(spec.submodule_search_locations or []), None)
    if origin in (None, "built-in", "frozen"):
        return True
    path = Path(origin).resolve()
    return not (path == project or project in path.parents) or "site-packages" in path.parts


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
