"""Prometheus metrics of one server, on a registry of its own (no process globals)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 16384)


class Metrics:
    def __init__(self, name: str, version: str, flavor: str) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

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
        self.inflight = Gauge(
            "modelyard_inflight_requests", "Requests being answered", registry=self.registry
        )
        self.log_depth = Gauge(
            "modelyard_predlog_queue_depth",
            "Records waiting to be written to the prediction/feedback log",
            ["log"],
            registry=self.registry,
        )
        self.log_dropped = Counter(
            "modelyard_predlog_dropped",
            "Records dropped because the log queue was full",
            ["log"],
            registry=self.registry,
        )
        self.load_seconds = Gauge(
            "modelyard_model_load_seconds",
            "Time to load the model at startup",
            registry=self.registry,
        )
        info = Gauge(
            "modelyard_model_info",
            "The model this server answers with",
            ["name", "version", "flavor"],
            registry=self.registry,
        )
        info.labels(name, version, flavor).set(1)
        self._children: dict[tuple[str, int], Any] = {}
        self._latency_children: dict[str, Any] = {}

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

    def track_log(self, log: str, depth: Callable[[], int]) -> None:
        self.log_depth.labels(log).set_function(depth)

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST
