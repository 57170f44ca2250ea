"""``python -m modelyard.serving --model-dir DIR --name N --version V --port P [serve]``.

The entrypoint of every model image. argparse, not click: the image installs only what serving
needs.

SageMaker's bring-your-own-container contract: SageMaker starts the image as ``docker run IMAGE
serve`` and expects ``GET /ping`` and ``POST /invocations`` on port 8080, or on
``SAGEMAKER_BIND_TO_PORT`` when it sets that. The trailing ``serve`` is accepted (serving is
all this entrypoint does), and ``SAGEMAKER_BIND_TO_PORT`` overrides ``--port``. The model is in
the image; nothing is read from ``/opt/ml/model``. Under ``serve`` a prediction-log folder that
cannot be written (a read-only root) moves to ``/tmp`` with a warning, rather than the server
exiting at start.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from modelyard.errors import ConfigError, ModelyardError
from modelyard.image_contract import SAGEMAKER_ARG, SAGEMAKER_LOG_DIR, SAGEMAKER_PORT_ENV
from modelyard.serving.config import ServeConfig


def main(argv: list[str] | None = None) -> int:
    import os

    parser = argparse.ArgumentParser(prog="python -m modelyard.serving")
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--version", default="1")
    parser.add_argument("--host", default="0.0.0.0")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument(
        "--grpc-port",
        type=int,
        default=None,
        help="also serve the V2 gRPC API (inference.GRPCInferenceService) on this port",
    )
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--log-dir", type=Path, default=None)
    parser.add_argument("--max-body-bytes", type=int, default=None)
    parser.add_argument("--max-batch-size", type=int, default=None)
    parser.add_argument("--max-wait-ms", type=float, default=None)
    parser.add_argument("--no-batching", action="store_true")
    parser.add_argument(
        "--allow-pickle",
        action="store_true",
        help="load a pickled model (only if it was saved as trusted)",
    )
    parser.add_argument(
        "--auth-url",
        default=None,
        help="require a predict token of the team server at this URL on the prediction routes",
    )
    parser.add_argument(
        "--allowed-host",
        action="append",
        default=None,
        help="also answer this Host name (repeatable); a loopback or specific --host answers "
        "only its own names otherwise, 0.0.0.0 any",
    )
    parser.add_argument("--log-level", default="info")
    parser.add_argument(
        "command",
        nargs="?",
        choices=["serve"],
        help="SageMaker starts a model image as 'IMAGE serve' (a prediction-log folder it "
        "cannot write then moves to /tmp)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(levelname)s %(name)s %(message)s")
    try:
        port = _port(args.port, os.environ.get(SAGEMAKER_PORT_ENV))
        config = ServeConfig.from_env(os.environ)
        overrides = {
            "log_dir": args.log_dir,
            "max_body_bytes": args.max_body_bytes,
            "max_batch_size": args.max_batch_size,
            "max_wait_ms": args.max_wait_ms,
            "batching": False if args.no_batching else None,
            "allow_pickle": True if args.allow_pickle else None,
            "auth_url": args.auth_url,
            "allowed_hosts": tuple(args.allowed_host) if args.allowed_host else None,
            "grpc_port": args.grpc_port,
        }
        from dataclasses import replace

        config = replace(config, **{k: v for k, v in overrides.items() if v is not None})
        if args.command == SAGEMAKER_ARG and config.log_dir and not _writable(config.log_dir):
            logging.getLogger("modelyard.serving").warning(
                "%s cannot be written (a read-only root?): the prediction log goes to %s",
                config.log_dir,
                SAGEMAKER_LOG_DIR,
            )
            config = replace(config, log_dir=Path(SAGEMAKER_LOG_DIR))
        from modelyard.serving.runner import serve

        serve(
            args.model_dir,
            name=args.name,
            version=args.version,
            host=args.host,
            port=port,
            workers=args.workers,
            config=config,
            log_level=args.log_level,
        )
    except ModelyardError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


def _writable(folder: Path) -> bool:
    """The folder, or the nearest existing folder above it, can be written by this process."""
    import os

    for candidate in (folder, *folder.parents):
        if candidate.exists():
            return os.access(candidate, os.W_OK | os.X_OK)
    return False


def _port(flag: int, sagemaker: str | None) -> int:
    """``SAGEMAKER_BIND_TO_PORT`` when SageMaker sets it, else ``--port``."""
    if not sagemaker:
        return flag
    if not sagemaker.isdigit() or not 0 < int(sagemaker) < 65536:
        raise ConfigError(f"{SAGEMAKER_PORT_ENV}={sagemaker!r} is not a port number")
    return int(sagemaker)


if __name__ == "__main__":
    sys.exit(main())
