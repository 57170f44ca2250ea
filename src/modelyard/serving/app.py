"""The model server: a pure-ASGI app answering V2, MLflow scoring, metrics and feedback.

Pure ASGI rather than a framework router: the routes are a handful of fixed shapes, and every
layer a request passes through costs throughput that the benchmark measures against a bare app.
The model loads in the lifespan startup (never in the constructor), readiness turns false the
moment SIGTERM arrives, and the prediction log is drained in the lifespan shutdown — after
uvicorn has let in-flight requests finish.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from modelyard.errors import FlavorError, HTTPError, InvalidInput
from modelyard.flavors.meta import INPUT_EXAMPLE_FILE
from modelyard.httpguard import BodyPolicy, Guard, allowed_hosts_for_bind
from modelyard.serving.config import ServeConfig
from modelyard.serving.decode import Batch, Decoder
from modelyard.serving.handlers import handle, mlflow_error
from modelyard.serving.labels import RecentRows

if TYPE_CHECKING:
    from modelyard.serving.auth import TokenVerifier
    from modelyard.serving.grpc_server import GrpcEndpoint

logger = logging.getLogger("modelyard.serving")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_SLOW_PREDICT_S = 0.001  # predict calls slower than this run in a thread


class ModelServer:
    """One model, one ASGI app. Build it with :func:`create_app`."""

    def __init__(
        self,
        model_dir: Path,
        *,
        name: str,
        version: str,
        config: ServeConfig,
        metrics_dir: Path | None = None,
    ) -> None:
        self.model_dir = Path(model_dir)
        self.name = name
        self.version = str(version)
        self.config = config
        self.metrics_dir = metrics_dir  # shared with sibling workers (serving.metrics)
        self.ready = False
        self.model: Any = None
        self.decoder: Decoder | None = None
        self.metrics: Any = None
        self.batcher: Any = None
        self.predlog: Any = None
        self.feedback: Any = None
        self.recent_rows = RecentRows(config.label_memory)  # checks labels' shapes
        # One rows-index scan at a time per worker: labels for unknown ids queue, not multiply.
        self.rows_scan = threading.Lock()
        self._predict: Callable[[Batch], Awaitable[Any]] | None = None
        self._sigterm_hooked = False
        self._previous_sigterm: Any = None
        self.grpc: GrpcEndpoint | None = None  # with config.grpc_port, once started
        self.auth: TokenVerifier | None = None  # None: prediction routes are open
        if config.auth_url is not None:
            from modelyard.serving.auth import TokenVerifier

            self.auth = TokenVerifier(config.auth_url, ttl_s=config.auth_ttl_s)
        self._http = _guard(self, config)

    # ---- lifecycle -------------------------------------------------------------------------
    async def startup(self) -> None:
        from modelyard.flavors.model import load_model
        from modelyard.serving.batching import Batcher
        from modelyard.serving.metrics import Metrics
        from modelyard.serving.predlog import FEEDBACK, PREDICTIONS, SegmentLog

        start = time.perf_counter()
        self.model = load_model(self.model_dir, allow_pickle=self.config.allow_pickle)
        meta = self.model.meta
        self.decoder = Decoder(
            meta.signature, max_rows=self.config.max_batch_rows, allow_nan=self.config.allow_nan
        )
        predict_seconds = self._warm_up()
        self.metrics = Metrics(
            self.name, self.version, meta.flavor, multiprocess_dir=self.metrics_dir
        )
        self.metrics.load_seconds.set(time.perf_counter() - start)
        log_dir = self.config.log_dir or Path.cwd() / "predlog"
        logs = {}
        for kind in (PREDICTIONS, FEEDBACK):
            log = logs[kind] = SegmentLog(
                log_dir,
                kind,
                segment_bytes=self.config.log_segment_bytes,
                segment_seconds=self.config.log_segment_seconds,
                on_drop=self.metrics.log_dropped.labels(kind).inc,
            )
            self.metrics.track_log(kind, lambda log=log: log.depth)
            log.start()
        self.predlog, self.feedback = logs[PREDICTIONS], logs[FEEDBACK]
        in_thread = predict_seconds >= _SLOW_PREDICT_S
        if self.config.batching is False:
            self._predict = self._direct_predict if not in_thread else self._thread_predict
        else:
            self.batcher = Batcher(
                self.model.predict,
                max_rows=self.config.max_batch_size,
                max_wait_s=self.config.max_wait_ms / 1000.0,
                in_thread=in_thread,
                on_batch=self._on_batch,
            )
            self.batcher.start()
            self._predict = self.batcher.submit
        if self.config.grpc_port is not None:
            from modelyard.serving.grpc_server import GrpcEndpoint

            host = self.config.bind_host or "127.0.0.1"  # where HTTP listens
            self.grpc = GrpcEndpoint(self, host, self.config.grpc_port)
            await self.grpc.start()
        self._hook_sigterm()
        self.ready = True
        logger.info(
            "model %s@%s (%s) ready in %.2fs; predict %.2f ms, batching %s",
            self.name,
            self.version,
            meta.flavor,
            time.perf_counter() - start,
            predict_seconds * 1000,
            self.batcher is not None,
        )

    def _on_batch(self, rows: int, requests: int) -> None:
        self.metrics.batch_rows.observe(rows)
        self.metrics.batch_requests.observe(requests)

    async def _direct_predict(self, batch: Batch) -> Any:
        self._on_batch(batch.rows, 1)
        return self.model.predict(batch.data)

    async def _thread_predict(self, batch: Batch) -> Any:
        import asyncio

        self._on_batch(batch.rows, 1)
        return await asyncio.get_running_loop().run_in_executor(
            None, self.model.predict, batch.data
        )

    def _warm_up(self) -> float:
        """Predict once on the saved input example so the first request pays no lazy imports,
        and return how long a one-row predict takes (which decides threading)."""
        assert self.decoder is not None
        example = self.model_dir / INPUT_EXAMPLE_FILE
        try:
            if example.is_file():
                raw = example.read_bytes()
                batch = self.decoder.mlflow(
                    orjson.loads(raw), booleans=b"true" in raw or b"false" in raw
                )
            else:
                batch = self.decoder.mlflow({"inputs": [self._zero_row()]})
            self.model.predict(batch.data)
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                self.model.predict(batch.data)
                best = min(best, time.perf_counter() - t0)
            return best
        except Exception as exc:
            logger.warning("warm-up predict failed (%s); the first request will be slower", exc)
            return 0.0

    def _zero_row(self) -> Any:
        assert self.decoder is not None
        sig = self.decoder.sig
        if sig.kind == "columns":
            return {
                c.name: "" if c.dtype == "str" else (False if c.dtype == "bool" else 0)
                for c in sig.inputs
            }
        spec = sig.inputs[0]
        return np.zeros([d if d > 0 else 1 for d in (spec.shape or (1,))[1:]]).tolist()

    def _hook_sigterm(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        self._previous_sigterm = previous

        def on_sigterm(signum: int, frame: Any) -> None:
            self.ready = False  # at once: load balancers stop sending before we stop listening
            if callable(previous):
                previous(signum, frame)

        signal.signal(signal.SIGTERM, on_sigterm)
        self._sigterm_hooked = True

    async def shutdown(self) -> None:
        self.ready = False
        if self._sigterm_hooked and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous_sigterm)
            self._sigterm_hooked = False
        if self.grpc is not None:  # HTTP has drained by now; gRPC calls get the same grace
            await self.grpc.stop(self.config.graceful_timeout_s)
            self.grpc = None
        if self.batcher is not None:
            await self.batcher.stop()
        for log in (self.predlog, self.feedback):
            if log is not None:
                log.close()
        if self.metrics is not None:
            self.metrics.close()
        if self.auth is not None:
            self.auth.close()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    logger.exception("cannot start the model server")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # ---- HTTP ------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        await self._http(scope, receive, send)


def _guard(server: ModelServer, config: ServeConfig) -> ASGIApp:
    """Host allow-list, an announced body over the cap, and (for feedback, read whole) JSON
    depth before the handlers run. Nothing wraps the other requests: the handlers enforce the
    cap as they read, and the connection keeps the head and body deadlines
    (:func:`modelyard.httpguard.header_deadline_protocol`, installed by the runner). Its
    refusals on ``/invocations`` have MLflow's error shape, as the handlers' do."""
    hosts = allowed_hosts_for_bind(config.bind_host, config.allowed_hosts)
    streamed = BodyPolicy(config.max_body_bytes, buffered=False)
    buffered = BodyPolicy(config.max_body_bytes, buffered=True)

    async def handled(scope: Scope, receive: Receive, send: Send) -> None:
        await handle(server, scope, receive, send)

    app: ASGIApp = handled
    if config.split_file is not None:  # the serving version of a progressive rollout
        from modelyard.serving.variants import VariantRouter

        def count(variant: str, outcome: str) -> None:
            if server.metrics is not None:
                server.metrics.variant_requests.labels(variant, outcome).inc()

        app = VariantRouter(handled, config.split_file, config.max_body_bytes, count)

    def guard(render: Callable[[int, str], bytes]) -> Guard:
        return Guard(
            app,
            allowed_hosts=hosts,
            policy=lambda path: buffered if path == "/v1/feedback" else streamed,
            body_timeout_s=None,
            max_json_depth=config.max_json_depth,
            render=render,
        )

    v2 = guard(lambda status, message: orjson.dumps({"error": message}))
    mlflow = guard(mlflow_error)

    async def route(scope: Scope, receive: Receive, send: Send) -> None:
        await (mlflow if scope["path"] == "/invocations" else v2)(scope, receive, send)

    return route


def create_app(
    model_dir: Path,
    *,
    name: str,
    version: str,
    config: ServeConfig,
    metrics_dir: Path | None = None,
) -> ModelServer:
    """The ASGI app serving the model folder ``model_dir`` as ``name`` version ``version``.

    ``metrics_dir``: the private folder a multi-worker server's parent made for its workers'
    metrics (:func:`modelyard.serving.metrics.multiprocess_metrics`); None for one process.
    """
    from modelyard.refs import validate_name

    validate_name(name, "model name")
    return ModelServer(
        model_dir, name=name, version=version, config=config, metrics_dir=metrics_dir
    )


def create_app_from_env() -> ModelServer:
    """Factory for worker processes (uvicorn's, gunicorn's): everything comes from
    ``MODELYARD_SERVE_*``, and the shared metrics folder from ``PROMETHEUS_MULTIPROC_DIR``,
    which the parent sets when there are several workers."""
    from modelyard.serving.lean import hide_unused_libraries
    from modelyard.serving.metrics import MULTIPROC_ENV

    env = os.environ
    config = ServeConfig.from_env(env)
    hide_unused_libraries(Path(env["MODELYARD_SERVE_MODEL_DIR"]))  # this process is the server
    return create_app(
        Path(env["MODELYARD_SERVE_MODEL_DIR"]),
        name=env["MODELYARD_SERVE_NAME"],
        version=env.get("MODELYARD_SERVE_VERSION", "1"),
        config=config,
        metrics_dir=Path(env[MULTIPROC_ENV]) if env.get(MULTIPROC_ENV) else None,
    )


__all__ = [
    "FlavorError",
    "HTTPError",
    "InvalidInput",
    "ModelServer",
    "create_app",
    "create_app_from_env",
]
