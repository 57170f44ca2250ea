"""The team server's Prometheus metrics on ``/metrics``.

Requests are counted by method, route *template* (``/api/v1/models/{name}``, never the raw
path, so a scan of made-up names cannot grow the series without bound) and status; unmatched
paths count as ``<unmatched>``. Latency is one histogram over the same labels minus the
status. Store errors (the database unreachable, or a SQLAlchemy error escaping a route) are a
counter by kind. Every app has its own registry, so two apps in one process never share series.

``/metrics`` needs a ``read`` token when auth is on (Prometheus sends one with
``authorization: {credentials_file: ...}``); with ``--no-auth`` (loopback only) it is open.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from fastapi import FastAPI
    from prometheus_client import CollectorRegistry, Counter, Histogram
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

UNMATCHED: Final = "<unmatched>"
BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class ServerMetrics:
    """The server's metric families, in a registry of their own."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.registry: CollectorRegistry = CollectorRegistry(auto_describe=True)
        self.requests: Counter = Counter(
            "modelyard_server_requests",
            "HTTP requests answered by the team server, by route template and status.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.latency: Histogram = Histogram(
            "modelyard_server_request_duration_seconds",
            "Time from the request's arrival to the end of its answer, by route template.",
            ("method", "route"),
            buckets=BUCKETS,
            registry=self.registry,
        )
        self.store_errors: Counter = Counter(
            "modelyard_server_store_errors",
            "Requests that failed in the metadata store, by kind (unavailable, database).",
            ("kind",),
            registry=self.registry,
        )
        for kind in ("unavailable", "database"):
            self.store_errors.labels(kind=kind)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)

    def store_error(self, exc: BaseException) -> None:
        """Count ``exc`` when it comes from the store; other errors are not the store's."""
        from modelyard.errors import StoreError

        if isinstance(exc, StoreError):
            self.store_errors.labels(kind="unavailable").inc()
        elif type(exc).__module__.startswith("sqlalchemy"):
            self.store_errors.labels(kind="database").inc()


class RouteTemplates:
    """Request path → the template of the app's route it matches (``/ui/{path}`` for the
    dashboard's files). Built from the route table on first use, after every router is on."""

    def __init__(self, app: FastAPI) -> None:
        self.app = app
        self._table: list[tuple[Any, str]] | None = None

    def _build(self) -> list[tuple[Any, str]]:
        from starlette.routing import Mount, compile_path

        from modelyard.server.auth import iter_routes

        table = []
        for route in iter_routes(self.app):
            path = getattr(route, "path", None)
            if not isinstance(path, str):
                continue
            if isinstance(getattr(route, "original_route", route), Mount):
                path = path.rstrip("/") + "/{path:path}"
            regex, template, _ = compile_path(path)
            table.append((regex, template.replace("{path:path}", "{path}")))
        return table

    def __call__(self, path: str) -> str:
        if self._table is None:
            self._table = self._build()
        for regex, template in self._table:
            if regex.match(path):
                return template
        return UNMATCHED


class MetricsMiddleware:
    """Times and counts every HTTP request (a plain ASGI wrapper, outermost)."""

    def __init__(
        self, app: ASGIApp, metrics: ServerMetrics, templates: Callable[[str], str]
    ) -> None:
        self.app = app
        self.metrics = metrics
        self.templates = templates

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def record_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route, method = self.templates(scope["path"]), str(scope.get("method", ""))
            self.metrics.requests.labels(method=method, route=route, status=str(status)).inc()
            self.metrics.latency.labels(method=method, route=route).observe(
                time.perf_counter() - started
            )


def install(app: FastAPI) -> ServerMetrics:
    """Add the middleware and the ``/metrics`` route (``read`` permission) to ``app``."""
    from starlette.responses import Response

    from modelyard.server.auth import require

    metrics = ServerMetrics()
    app.state.metrics = metrics
    app.add_middleware(MetricsMiddleware, metrics=metrics, templates=RouteTemplates(app))

    # response_model=None: the return annotation names a class imported here, which the
    # OpenAPI generator could not resolve from the module (it broke /openapi.json).
    @app.get("/metrics", tags=["server"], dependencies=[require("read")], response_model=None)
    def prometheus_metrics() -> Response:
        """Prometheus text format: requests, latencies and store errors of this server."""
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return metrics
