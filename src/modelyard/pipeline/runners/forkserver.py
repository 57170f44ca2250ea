"""Warm step workers: a fork server that has the heavy imports loaded once.

Starting ``python -m modelyard.pipeline.worker`` for every step costs an interpreter start
plus importing modelyard, pandas, scikit-learn... on every step. The local runner instead
starts this server once per pipeline run (on the first step that runs); it imports what the
workers need and what the pipeline file imports, then waits. Each step is a ``fork()`` of the
server: a new process with those modules already in memory (copy-on-write), which runs the
worker contract exactly as ``python -m modelyard.pipeline.worker TASK`` does.

Isolation is that of a process per step, because it is one:

- the server never runs a step, so it stays as it was after its imports; a step that changes a
  module's globals, ``os.environ`` or ``sys.modules`` changes them in its own process only, and
  the next step is forked from the untouched server;
- each step is the leader of its own session, so a timeout kills it and everything it started
  (``killpg``), and a crash (SIGKILL, a segfault, ``os._exit``) ends only that process; the
  server reaps it and reports its exit status.

Protocol (JSON lines over the server's stdin and stdout, written by one parent)::

    parent -> server  {"id": 1, "task": PATH, "log": PATH, "cwd": DIR, "env": {...}}
    server -> parent  {"ready": true}                      (once, after the preloads)
    server -> parent  {"id": 1, "pid": 4242}               (forked)
    server -> parent  {"id": 1, "exit": 0}                 (reaped; -N: killed by signal N)

The server exits when its stdin closes (the parent went away).
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import json
import os
import select
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

SERVER_MODULE = "modelyard.pipeline.runners.forkserver"

# What every worker imports before it runs a step.
BASE_PRELOAD = (
    "modelyard.pipeline.execute",
    "modelyard.pipeline.graph",
    "modelyard.pipeline.loader",
    "modelyard.pipeline.serializers",
    "modelyard.workspace",
    "modelyard.store",
    "modelyard.artifacts",
    "modelyard.tracking",
    "modelyard.tracking.run",
)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m modelyard.pipeline.runners.forkserver [MODULE ...]``: preload, then serve."""
    modules = list(BASE_PRELOAD) + list(sys.argv[1:] if argv is None else argv)
    loaded = preload(modules)
    import gc

    gc.collect()
    gc.freeze()  # keep the preloaded objects out of the children's collections (fewer COW pages)
    _send({"ready": True, "preloaded": loaded})
    return serve()


def preload(modules: Sequence[str]) -> list[str]:
    """Import what can be imported; a module that fails to import is left to the step."""
    loaded = []
    for name in modules:
        try:
            importlib.import_module(name)
        except BaseException:  # an import's own failure is the step's to report
            continue
        loaded.append(name)
    return loaded


def serve() -> int:
    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the orchestrator's to handle
    children: dict[int, int] = {}  # pid -> request id
    buffer = b""
    open_input = True
    while open_input or children:
        try:
            ready, _, _ = select.select([0, wake_r] if open_input else [wake_r], [], [])
        except InterruptedError:
            continue
        if wake_r in ready:
            with contextlib.suppress(BlockingIOError):
                os.read(wake_r, 4096)
        _reap(children)
        if 0 in ready:
            chunk = os.read(0, 65536)
            if not chunk:
                open_input = False  # the parent is gone: finish reaping, then leave
                continue
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                if line.strip():
                    _start(json.loads(line), children, (wake_r, wake_w))
    return 0


def _reap(children: dict[int, int]) -> None:
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        request = children.pop(pid, None)
        if request is not None:
            _send({"id": request, "exit": os.waitstatus_to_exitcode(status)})


def _start(request: dict[str, object], children: dict[int, int], fds: tuple[int, int]) -> None:
    request_id = int(str(request["id"]))
    pid = os.fork()
    if pid == 0:  # the step's process: never returns
        _child(request, fds)
    children[pid] = request_id
    _send({"id": request_id, "pid": pid})


def _child(request: dict[str, object], fds: tuple[int, int]) -> None:
    code = 1
    try:
        os.setsid()
        signal.set_wakeup_fd(-1)
        for fd in fds:
            os.close(fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a fresh interpreter
        log = os.open(str(request["log"]), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(log)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        env = request["env"]
        assert isinstance(env, dict)
        os.environ.clear()
        os.environ.update({str(k): str(v) for k, v in env.items()})
        os.chdir(str(request["cwd"]))
        _reseed()
        from modelyard.pipeline.execute import run_task_file

        task = str(request["task"])
        sys.argv = ["modelyard.pipeline.worker", task]
        code = run_task_file(Path(task))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:  # reported in the step's log, as a fresh worker would
        import traceback

        traceback.print_exc()
        code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _reseed() -> None:
    """A fresh interpreter draws fresh random state; a fork copies the server's. ``random``
    reseeds itself after a fork; NumPy's global generator does not."""
    numpy = sys.modules.get("numpy")
    if numpy is not None:
        with contextlib.suppress(Exception):
            numpy.random.seed()


def _send(doc: dict[str, object]) -> None:
    data = (json.dumps(doc) + "\n").encode()
    while data:
        try:
            written = os.write(1, data)
        except InterruptedError:
            continue
        except OSError as exc:
            if exc.errno == errno.EPIPE:
                return
            raise
        data = data[written:]


if __name__ == "__main__":
    sys.exit(main())
