"""The gunicorn worker of the ``local`` target: uvicorn's, with a drain before shutdown.

uvicorn's graceful shutdown stops accepting and, in the same step, closes every connection
that has no request in progress — including one accepted a moment ago whose request bytes are
still unread, whose client then sees a reset. During a rollout that race drops a request or
two in thousands. Here the worker first stops accepting (the master's socket keeps queueing
for the new workers), waits ``DRAIN_S`` so requests already accepted are read, then runs
uvicorn's usual shutdown, which lets them finish.

It also leaves a marker ``<MODELYARD_DEPLOY_READY_DIR>/<master pid>-<worker pid>`` once the
model is loaded and the worker accepts, which is how a rollout knows the new workers are all
serving before it stops the old master.

The hooks at the end run in the master: with several workers it makes the private folder their
Prometheus metrics meet in (so one scrape reports the whole service), tells it when a worker
exits, and removes it on exit. A rollout starts a new master, which makes a folder of its own.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from pathlib import Path
from typing import Any

from gunicorn.arbiter import Arbiter  # type: ignore[import-untyped]
from uvicorn.server import Server
from uvicorn_worker import UvicornWorker  # type: ignore[import-untyped]

from modelyard.serving import metrics

DRAIN_S = 0.5


class _DrainingServer(Server):
    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=sockets)
        folder = os.environ.get("MODELYARD_DEPLOY_READY_DIR")
        if self.started and folder:
            marker = Path(folder) / f"{os.getppid()}-{os.getpid()}"
            marker.write_text(os.environ.get("MODELYARD_SERVE_VERSION", ""))

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        for server in self.servers:
            server.close()
        await asyncio.sleep(DRAIN_S)
        await super().shutdown(sockets=sockets)


class DrainingUvicornWorker(UvicornWorker):  # type: ignore[misc]
    """``worker_class = "modelyard.deploy.gunicorn_worker.DrainingUvicornWorker"``, with the
    request head and body deadlines of :mod:`modelyard.httpguard`."""

    CONFIG_KWARGS = {
        **UvicornWorker.CONFIG_KWARGS,
        "http": "modelyard.httpguard:ServeDeadlinesHTTP",
    }

    async def _serve(self) -> None:
        # Same as UvicornWorker._serve, with the draining server.
        self.config.app = self.wsgi
        server = _DrainingServer(config=self.config)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)


# -- master hooks (named in the generated gunicorn.conf.py) ------------------------------------
_metrics_dir: list[Path] = []  # the folder this master process made, if any


def on_starting(arbiter: Any) -> None:
    """Before the first worker forks: a metrics folder for several workers, none for one."""
    if arbiter.cfg.workers > 1:
        _metrics_dir.append(metrics.create_multiprocess_dir())
        os.environ[metrics.MULTIPROC_ENV] = str(_metrics_dir[0])
    else:
        metrics.single_process_metrics()


def child_exit(arbiter: Any, worker: Any) -> None:
    """A worker is gone: its in-flight and queue gauges leave the totals."""
    if _metrics_dir:
        metrics.mark_process_dead(_metrics_dir[0], worker.pid)


def on_exit(arbiter: Any) -> None:
    while _metrics_dir:
        metrics.remove_multiprocess_dir(_metrics_dir.pop())
