"""Prometheus metrics of one server, on a registry of its own (no process globals).

One worker keeps its metrics in memory and a scrape reads them. Several workers (uvicorn's or
gunicorn's processes behind one port) each answer a share of the requests and of the scrapes,
so there prometheus_client's multiprocess mode is used: every worker writes its values to
memory-mapped files in one folder, and a scrape, whichever worker gets it, merges the files of
all of them into the server's totals. The parent creates that folder, private (0700), before
any worker starts, names it in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client picks its value
class from that variable when it is first imported), and removes it when it exits. A single
worker never pays for the files: its parent clears the variable instead.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

from modelyard.errors import ConfigError
from modelyard.processes import pid_alive

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_LEGACY_ENV = "prometheus_multiproc_dir"  # still honoured by prometheus_client


class Metrics:
    """The server's metrics. ``multiprocess_dir`` is the folder shared by the workers of a
    multi-worker server (see the module docstring); ``None`` for a single process."""

    def __init__(
        self, name: str, version: str, flavor: str, *, multiprocess_dir: Path | None = None
    ) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        if multiprocess_dir is not None:
            _check_multiprocess(multiprocess_dir)
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=True)
        self._requests = Counter(
            "modelyard_requests",
            "HTTP requests by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "modelyard_request_duration_seconds",
            "Request latency by route",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_rows = Histogram(
            "modelyard_batch_rows",
            "Rows per predict call",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        self.batch_requests = Histogram(
            "modelyard_batch_requests",
            "Requests combined into one predict call",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )
        # The multiprocess modes only matter with several workers: gauges of live workers are
        # summed (in flight, queued) or maxed (load time, the info marker); a dead worker's
        # files are dropped, while its counters and histograms keep counting in the totals.
        self.inflight = Gauge(
            "modelyard_inflight_requests",
            "Requests being answered",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.log_depth = Gauge(
            "modelyard_predlog_queue_depth",
            "Records waiting to be written to the prediction/feedback log",
            ["log"],
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self.log_dropped = Counter(
            "modelyard_predlog_dropped",
            "Records whose write failed (their requests were refused with 503)",
            ["log"],
            registry=self.registry,
        )
        self.variant_requests = Counter(
            "modelyard_variant_requests",
            "Requests copied (shadow) or passed (canary) to a candidate, by outcome",
            ["variant", "outcome"],
            registry=self.registry,
        )
        self.load_seconds = Gauge(
            "modelyard_model_load_seconds",
            "Time to load the model at startup",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        info = Gauge(
            "modelyard_model_info",
            "The model this server answers with",
            ["name", "version", "flavor"],
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        info.labels(name, version, flavor).set(1)
        self._children: dict[tuple[str, int], Any] = {}
        self._latency_children: dict[str, Any] = {}
        self._depths: list[tuple[Any, Callable[[], int]]] = []
        self._merged: Any = None
        if multiprocess_dir is not None:
            self._merged = CollectorRegistry()
            self._merged.register(_WorkerFiles(multiprocess_dir))

    def observe(self, route: str, status: int, seconds: float) -> None:
        # Label lookups are cached: they dominate the cost of a metric update otherwise.
        key = (route, status)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = self._requests.labels(route, str(status))
        child.inc()
        lat = self._latency_children.get(route)
        if lat is None:
            lat = self._latency_children[route] = self._latency.labels(route)
        lat.observe(seconds)

    def track_log(self, log: str, depth: Callable[[], int]) -> Callable[[int], None] | None:
        """Report the queue depth of ``log``. One process reads ``depth`` at each scrape and
        returns None. Several workers cannot call each other's functions, so the returned
        setter is for the log's writer thread to record the depth as it drains (the worker
        answering a scrape refreshes its own value first)."""
        child = self.log_depth.labels(log)
        if self._merged is None:
            child.set_function(depth)
            return None
        self._depths.append((child, depth))
        child.set(depth())
        setter: Callable[[int], None] = child.set
        return setter

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        if self._merged is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        for child, depth in self._depths:
            child.set(depth())
        assert self.multiprocess_dir is not None
        forget_dead_workers(self.multiprocess_dir)
        return generate_latest(self._merged), CONTENT_TYPE_LATEST

    def close(self) -> None:
        """This worker stops: its live gauges leave the totals (its counters stay)."""
        if self.multiprocess_dir is not None:
            mark_process_dead(self.multiprocess_dir, os.getpid())


class _WorkerFiles:
    """prometheus_client's ``MultiProcessCollector`` over the workers' files, minus any a worker
    has just created and not yet sized: reading one of those would fail the whole scrape."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def collect(self) -> Any:
        from prometheus_client.multiprocess import MultiProcessCollector

        files = []
        for file in self.path.glob("*.db"):
            with contextlib.suppress(FileNotFoundError):
                if file.stat().st_size >= 8:
                    files.append(str(file))
        return MultiProcessCollector.merge(files, accumulate=True)  # type: ignore[no-untyped-call]


def _check_multiprocess(path: Path) -> None:
    """Refuse a metrics folder this server did not make for itself: the workers create and
    write files in it, so one that others can write to could point those writes elsewhere."""
    from prometheus_client import values

    try:
        st = os.lstat(path)
    except OSError as exc:
        raise ConfigError(f"{MULTIPROC_ENV}={path}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise ConfigError(
            f"{MULTIPROC_ENV}={path} is not a private folder of this user (a directory, mode "
            "0700); the server's parent process creates one for its workers"
        )
    if not getattr(values.ValueClass, "_multiprocess", False) or os.environ.get(
        MULTIPROC_ENV
    ) != str(path):
        raise ConfigError(
            f"{MULTIPROC_ENV} must name {path} before prometheus_client is first imported in "
            "a worker process; its metrics would stay in this worker only"
        )


def create_multiprocess_dir() -> Path:
    """A fresh folder, mode 0700, for the metric files of one server's workers."""
    return Path(tempfile.mkdtemp(prefix="modelyard-metrics-"))


def remove_multiprocess_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def mark_process_dead(path: Path, pid: int) -> None:
    """Drop the live-gauge files of worker ``pid`` (prometheus_client's ``mark_process_dead``,
    without importing prometheus_client into a supervisor, and safe when two workers race)."""
    for file in path.glob(f"gauge_live*_{int(pid)}.db"):
        file.unlink(missing_ok=True)


def forget_dead_workers(path: Path) -> None:
    """Drop the live gauges of workers that are gone without saying so: uvicorn's supervisor
    replaces a crashed worker and tells no one."""
    for file in path.glob("gauge_live*_*.db"):
        pid = file.stem.rpartition("_")[2]
        if pid.isdigit() and not pid_alive(int(pid)):
            file.unlink(missing_ok=True)


@contextlib.contextmanager
def multiprocess_metrics(environ: MutableMapping[str, str] | None = None) -> Iterator[Path]:
    """For the parent of several workers: a private metrics folder named in ``environ`` (the
    workers inherit it) while the block runs, removed afterwards. Any folder the environment
    named before is replaced, never used."""
    environ = os.environ if environ is None else environ
    saved = {k: environ.pop(k) for k in (MULTIPROC_ENV, _LEGACY_ENV) if k in environ}
    path = create_multiprocess_dir()
    environ[MULTIPROC_ENV] = str(path)
    try:
        yield path
    finally:
        environ.pop(MULTIPROC_ENV, None)
        environ.update(saved)
        remove_multiprocess_dir(path)


def single_process_metrics(environ: MutableMapping[str, str] | None = None) -> None:
    """For a one-process server: metrics in memory, no files, whatever the environment says —
    unless prometheus_client is already loaded here, which has decided for itself."""
    environ = os.environ if environ is None else environ
    if "prometheus_client" not in sys.modules:
        environ.pop(MULTIPROC_ENV, None)
        environ.pop(_LEGACY_ENV, None)
