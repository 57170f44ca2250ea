"""Run the model server with uvicorn: in-process for one worker, worker processes for more."""

from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path

from modelyard.serving.app import create_app
from modelyard.serving.config import ServeConfig


def serve(
    model_dir: Path,
    *,
    name: str,
    version: str,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int | None = None,
    config: ServeConfig | None = None,
    log_level: str = "info",
) -> None:
    """Serve until SIGTERM/SIGINT; in-flight requests finish and the logs are flushed.

    Several workers are separate processes (uvicorn re-imports the app in each), so they get the
    configuration through ``MODELYARD_SERVE_*`` variables and each writes its own log segments;
    their metrics meet in a private folder made here and removed on exit, so ``/metrics``
    reports the whole server whichever worker answers it.
    """
    import uvicorn

    from modelyard.httpguard import header_deadline_protocol
    from modelyard.serving.metrics import multiprocess_metrics, single_process_metrics

    config = replace(config or ServeConfig(), bind_host=host)
    if workers is not None:
        config = replace(config, workers=workers)
    common = {
        "host": host,
        "port": port,
        "log_level": log_level,
        "access_log": False,  # the prediction log and /metrics record requests, off the path
        "timeout_graceful_shutdown": int(config.graceful_timeout_s),
        "lifespan": "on",
    }
    if config.workers == 1:
        from modelyard.serving.lean import hide_unused_libraries

        single_process_metrics()  # in memory, as fast as metrics get

        hide_unused_libraries(Path(model_dir))
        app = create_app(Path(model_dir), name=name, version=version, config=config)
        http = header_deadline_protocol(config.header_timeout_s, config.body_timeout_s)
        uvicorn.Server(uvicorn.Config(app, http=http, **common)).run()  # type: ignore[arg-type]
        return
    os.environ.update(config.to_env())
    os.environ["MODELYARD_SERVE_MODEL_DIR"] = str(Path(model_dir).resolve())
    os.environ["MODELYARD_SERVE_NAME"] = name
    os.environ["MODELYARD_SERVE_VERSION"] = str(version)
    with multiprocess_metrics():  # before any worker starts: they inherit the variable
        uvicorn.run(
            "modelyard.serving.app:create_app_from_env",
            factory=True,
            workers=config.workers,
            http="modelyard.httpguard:ServeDeadlinesHTTP",
            **common,  # type: ignore[arg-type]
        )
