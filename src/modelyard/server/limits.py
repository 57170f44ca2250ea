"""The team server's limits: body caps, deadlines, JSON depth and the Host allow-list.

Read from ``[server]`` in ``modelyard.toml``, then ``MODELYARD_SERVER_*`` variables, then the
``modelyard server`` flags; enforced by :class:`modelyard.httpguard.Guard` before any route runs
(see :func:`install`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Final

from modelyard.errors import ConfigError
from modelyard.httpguard import (
    DEFAULT_BODY_TIMEOUT_S,
    DEFAULT_HEADER_TIMEOUT_S,
    DEFAULT_MAX_JSON_DEPTH,
    BodyPolicy,
    Guard,
    GuardRefusal,
    Scope,
)

if TYPE_CHECKING:
    from fastapi import FastAPI

ENV_PREFIX: Final = "MODELYARD_SERVER_"
UPLOAD_PATH_PREFIX: Final = "/api/v1/uploads/"


@dataclass(frozen=True)
class ServerLimits:
    """``max_body_bytes`` caps every JSON request; ``max_upload_bytes`` one artifact upload
    (announced size, Content-Length and streamed bytes alike). ``allowed_hosts`` None: any
    ``Host`` (what :func:`create_app` does unless told; ``modelyard server`` derives the set
    from its bind address)."""

    max_body_bytes: int = 32 * 1024 * 1024
    max_upload_bytes: int = 64 * 1024**3
    max_json_depth: int = DEFAULT_MAX_JSON_DEPTH
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    allowed_hosts: frozenset[str] | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name != "allowed_hosts" and not value > 0:
                raise ConfigError(f"server limit {f.name} must be positive, not {value!r}")

    def policy(self, path: str) -> BodyPolicy:
        if path.startswith(UPLOAD_PATH_PREFIX):
            return BodyPolicy(self.max_upload_bytes, buffered=False, per_chunk=True)
        return BodyPolicy(self.max_body_bytes)

    @classmethod
    def read(
        cls, section: Mapping[str, Any], environ: Mapping[str, str], **overrides: Any
    ) -> ServerLimits:
        """From a ``[server]`` table, then ``MODELYARD_SERVER_*``, then ``overrides`` (the
        CLI's flags; None values are ignored). ``allowed_hosts`` here are extra names."""
        values: dict[str, Any] = {}
        for f in fields(cls):
            if f.name == "allowed_hosts":
                continue
            raw: Any = section.get(f.name)
            env = environ.get(ENV_PREFIX + f.name.upper())
            if env:
                raw = env
            if raw is None:
                continue
            try:
                values[f.name] = float(raw) if f.name.endswith("_s") else int(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"server limit {f.name}={raw!r} is not a number") from None
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    def with_hosts(self, hosts: frozenset[str] | None) -> ServerLimits:
        return replace(self, allowed_hosts=hosts)


def extra_hosts(section: Mapping[str, Any], environ: Mapping[str, str]) -> list[str]:
    """``allowed_hosts`` from the config table (a list) and ``MODELYARD_SERVER_ALLOWED_HOSTS``
    (comma-separated)."""
    found = section.get("allowed_hosts", [])
    if isinstance(found, str) or not isinstance(found, list):
        raise ConfigError("[server] allowed_hosts must be a list of host names")
    env = environ.get(ENV_PREFIX + "ALLOWED_HOSTS", "")
    return [str(h) for h in found] + [h for h in env.split(",") if h.strip()]


def install(app: FastAPI, limits: ServerLimits) -> None:
    """Wrap the app in the guard; a request with a body must carry a valid token first."""
    app.add_middleware(
        Guard,
        allowed_hosts=limits.allowed_hosts,
        policy=limits.policy,
        body_timeout_s=limits.body_timeout_s,
        max_json_depth=limits.max_json_depth,
        authenticate=_authenticate_before_body,
    )


async def _authenticate_before_body(scope: Scope) -> None:
    """The token check, before the body is read: an anonymous or invalid caller gets 401 and
    the server buffers nothing. The principal is kept in the scope for the route's own check
    (which still decides the permission)."""
    from starlette.concurrency import run_in_threadpool
    from starlette.requests import Request

    from modelyard.errors import Unauthorized
    from modelyard.server.auth import EARLY_PRINCIPAL, authenticate

    request = Request(scope)
    if request.app.state.auth is None:
        return
    try:
        scope[EARLY_PRINCIPAL] = await run_in_threadpool(authenticate, request)
    except Unauthorized as exc:
        raise GuardRefusal(401, exc.message, ((b"www-authenticate", b"Bearer"),)) from None
