"""ServeConfig: the knobs of one model server, read when the server is built."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path

from modelyard.errors import ConfigError

ENV_PREFIX = "MODELYARD_SERVE_"


@dataclass(frozen=True)
class ServeConfig:
    """Limits, batching and prediction-log settings.

    ``max_batch_size`` bounds the rows of one combined predict call; ``max_wait_ms`` is how long
    the batcher may hold a lone request hoping for company (0 = never wait: requests that
    arrive while the model is busy are still combined, which is where batching pays off).
    ``batching=None`` decides from the model's measured predict time at startup.

    ``auth_url``: the team server whose tokens the prediction routes require (None: open);
    ``auth_ttl_s`` is how long a verified token is trusted before it is checked again, so a
    revocation takes effect within that time (see :mod:`modelyard.serving.auth`).

    Limits before work (:mod:`modelyard.httpguard`): a request head must arrive within
    ``header_timeout_s``, a body within ``body_timeout_s``; feedback JSON may nest at most
    ``max_json_depth`` levels. ``bind_host`` is the address the server listens on (set by the
    runner): a loopback or specific bind answers only its own ``Host`` names plus
    ``allowed_hosts``; a wildcard bind (the default, as in model images) answers any.

    ``grpc_port``: also serve the V2 gRPC API there (None: no gRPC; 0: any free port), on
    ``bind_host`` as HTTP does (127.0.0.1 when no bind host is set).

    ``max_label_bytes`` bounds one feedback label (as JSON); ``label_memory`` is how many recent
    predictions (request id → rows) each worker remembers to check a label's shape against.

    ``variant``: what this server's predictions are logged as (``primary``: the serving
    version; ``canary``: a candidate of a progressive rollout, which logs the requests mirrored
    to it as ``shadow``). ``split_file``: the file naming the candidates this server mirrors
    to or splits with (see :mod:`modelyard.serving.variants`; None: never).
    """

    max_body_bytes: int = 8 * 1024 * 1024
    max_batch_rows: int = 10_000
    batching: bool | None = None
    max_batch_size: int = 256
    max_wait_ms: float = 0.0
    log_dir: Path | None = None
    log_segment_bytes: int = 64 * 1024 * 1024
    log_segment_seconds: float = 300.0
    max_label_bytes: int = 64 * 1024
    label_memory: int = 10_000
    workers: int = 1
    allow_nan: bool = False
    allow_pickle: bool = False
    graceful_timeout_s: float = 30.0
    auth_url: str | None = None
    auth_ttl_s: float = 30.0
    header_timeout_s: float = 10.0
    body_timeout_s: float = 30.0
    max_json_depth: int = 64
    bind_host: str = ""
    allowed_hosts: tuple[str, ...] = ()
    grpc_port: int | None = None
    variant: str = "primary"
    split_file: Path | None = None

    def __post_init__(self) -> None:
        for name in (
            "max_body_bytes",
            "max_batch_rows",
            "max_batch_size",
            "log_segment_bytes",
            "max_label_bytes",
            "label_memory",
            "workers",
            "max_json_depth",
        ):
            if getattr(self, name) < 1:
                raise ConfigError(f"serve config {name} must be at least 1")
        if (
            self.max_wait_ms < 0
            or self.log_segment_seconds <= 0
            or self.header_timeout_s <= 0
            or self.body_timeout_s <= 0
        ):
            raise ConfigError("serve config times must be positive")
        if not 0 <= self.auth_ttl_s <= 3600:
            raise ConfigError("serve config auth_ttl_s must be between 0 and 3600 seconds")
        if self.auth_url is not None:
            check_auth_url(self.auth_url)
        if self.variant not in ("primary", "canary"):
            raise ConfigError(
                f"serve config variant must be primary or canary, not {self.variant!r}"
            )
        if self.grpc_port is not None and not 0 <= self.grpc_port <= 65535:
            raise ConfigError(f"serve config grpc_port {self.grpc_port} is not a TCP port")

    def to_env(self) -> dict[str, str]:
        """Environment for worker processes, which rebuild the config with :meth:`from_env`."""
        env = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "allowed_hosts":
                value = ",".join(value) or None
            if value is not None:
                env[ENV_PREFIX + f.name.upper()] = str(value)
        return env

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> ServeConfig:
        kwargs: dict[str, object] = {}
        for f in fields(cls):
            raw = environ.get(ENV_PREFIX + f.name.upper())
            if raw is None:
                continue
            try:
                if f.name in ("log_dir", "split_file"):
                    kwargs[f.name] = Path(raw)
                elif f.name in ("auth_url", "grpc_port"):
                    value = raw or None  # set but empty: as if unset
                    kwargs[f.name] = int(value) if value and f.name == "grpc_port" else value
                elif f.name in ("bind_host", "variant"):
                    kwargs[f.name] = raw
                elif f.name == "allowed_hosts":
                    kwargs[f.name] = tuple(h.strip() for h in raw.split(",") if h.strip())
                elif f.name in ("batching", "allow_nan", "allow_pickle"):
                    kwargs[f.name] = raw.lower() in ("1", "true", "yes", "on")
                elif f.name in (
                    "max_wait_ms",
                    "log_segment_seconds",
                    "graceful_timeout_s",
                    "auth_ttl_s",
                    "header_timeout_s",
                    "body_timeout_s",
                ):
                    kwargs[f.name] = float(raw)
                else:
                    kwargs[f.name] = int(raw)
            except ValueError as exc:
                raise ConfigError(f"{ENV_PREFIX}{f.name.upper()}={raw!r}: {exc}") from exc
        return cls(**kwargs)  # type: ignore[arg-type]


def check_auth_url(url: str, what: str = "serve config auth_url") -> str:
    """An http(s) base URL of a team server; returns its host. Credentials in it would be sent
    along with every check and would show in logs, so they are refused rather than stripped.
    ``what`` names the setting in the error (deploy checks its ``--auth-url`` with this too)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018  (raises on a port that is not a number, or out of range)
    except ValueError as exc:
        raise ConfigError(f"{what} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise ConfigError(
            f"{what} must be the team server's http(s) URL, like http://modelyard.internal:5500"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigError(f"{what} must not hold credentials")
    if parts.query or parts.fragment:
        raise ConfigError(f"{what} must not have a query or fragment")
    return host
