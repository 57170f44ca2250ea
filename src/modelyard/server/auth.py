"""Who may call which route.

Deny by default: every route declares the one permission it needs with ``require(...)`` (or
``public()`` for the few that carry no data, like health checks), and :func:`check_routes`
refuses to build an app in which any route declares none. Roles are sets of permissions, so
adding a role never means touching a route.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from starlette.requests import Request

from modelyard.errors import InvalidValue

if TYPE_CHECKING:
    from fastapi import FastAPI

    from modelyard.store.server_entities import ApiToken

Permission = Literal["read", "write", "admin", "predict"]
Role = Literal["read", "write", "admin", "predict"]

PERMISSIONS: Final[tuple[Permission, ...]] = ("read", "write", "admin", "predict")
ROLES: Final[tuple[Role, ...]] = ("read", "write", "admin", "predict")

# A predict-only token can call a model and nothing else: it is what a model server or an
# application holds, so leaking it exposes no data and moves no alias.
ROLE_GRANTS: Final[dict[str, frozenset[str]]] = {
    "read": frozenset({"read"}),
    "write": frozenset({"read", "write", "predict"}),
    "admin": frozenset({"read", "write", "admin", "predict"}),
    "predict": frozenset({"predict"}),
}

TOKEN_HEADER = "authorization"
# Where the guard leaves the caller it authenticated before reading a body (server.limits).
EARLY_PRINCIPAL: Final = "modelyard.principal"


@dataclass(frozen=True)
class AuthConfig:
    """How the server authenticates. ``tokens`` are extra static ``secret -> role`` pairs
    (e.g. injected by a deployment); the store's token table is always consulted."""

    tokens: tuple[tuple[str, Role], ...] = ()


DEFAULT_AUTH: Final = AuthConfig()


@dataclass(frozen=True)
class Principal:
    """The caller of one request."""

    name: str
    role: str  # one of ROLES
    token_id: str | None = None

    def can(self, permission: str) -> bool:
        return permission in ROLE_GRANTS[self.role]


ANONYMOUS_ADMIN: Final = Principal(name="anonymous", role="admin")


class _Check:
    """A FastAPI dependency that carries the permission it enforces, so the app can see it."""

    def __init__(self, permission: Permission | None) -> None:
        self.permission = permission

    def __repr__(self) -> str:
        return f"require({self.permission!r})" if self.permission else "public()"

    def __call__(self, request: Request) -> Principal:
        if self.permission is None:
            return ANONYMOUS_ADMIN if request.app.state.auth is None else _anonymous()
        principal = authenticate(request)
        if not principal.can(self.permission):
            from modelyard.server.errors import Forbidden

            raise Forbidden(
                f"this token's role {principal.role!r} does not grant {self.permission!r}"
            )
        request.state.principal = principal
        return principal


def _anonymous() -> Principal:
    return Principal(name="anonymous", role="read")


def require(permission: Permission) -> Any:
    """The dependency a route adds to say what it needs: ``dependencies=[require("read")]``
    on a route or router, or a parameter ``principal: Principal = require("write")``."""
    from fastapi import Depends

    if permission not in PERMISSIONS:
        raise InvalidValue(f"unknown permission {permission!r}")
    return Depends(_Check(permission))


def public() -> Any:
    """For routes that carry no data (health, static assets): explicitly open."""
    from fastapi import Depends

    return Depends(_Check(None))


def authenticate(request: Request) -> Principal:
    """The caller, from ``Authorization: Bearer <token>``; raises ``Unauthorized``."""
    from modelyard.server.errors import Unauthorized

    auth: AuthConfig | None = request.app.state.auth
    if auth is None:
        return ANONYMOUS_ADMIN
    early: Principal | None = request.scope.get(EARLY_PRINCIPAL)
    if early is not None:
        return early
    header = request.headers.get(TOKEN_HEADER, "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Unauthorized("missing bearer token")
    secret = secret.strip()
    for static_secret, role in auth.tokens:
        if hmac.compare_digest(static_secret.encode(), secret.encode()):
            return Principal(name="static", role=role)
    token: ApiToken | None = request.app.state.workspace.store.tokens.authenticate(secret)
    if token is None:
        # One message for unknown, expired and revoked: the caller learns nothing either way.
        raise Unauthorized("invalid, expired or revoked token")
    return Principal(name=token.name, role=token.role, token_id=token.id)


def route_permission(route: Any) -> str | None:
    """The permission a route declared (``"public"`` for :func:`public`), or None."""
    dependant = getattr(route, "dependant", None)
    if dependant is None:
        return None
    found: list[str] = []
    _walk(dependant, found)
    return found[0] if found else None


def _walk(dependant: Any, found: list[str]) -> None:
    call = getattr(dependant, "call", None)
    if isinstance(call, _Check):
        found.append(call.permission or "public")
    for sub in getattr(dependant, "dependencies", ()):
        _walk(sub, found)


# Static dashboard assets: the bundle is public, the data it fetches is not.
PUBLIC_MOUNTS: Final = frozenset({"/ui"})
# FastAPI's own documentation routes: the spec describes routes, not data.
DOC_PATHS: Final = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})


def iter_routes(app: FastAPI) -> list[Any]:
    """Every route of the app with the prefix and dependencies of the routers that include it
    (FastAPI >= 0.165 keeps included routers as one nested route; older versions copy them)."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # pragma: no cover - FastAPI < 0.165 flattens included routers
        return list(app.routes)
    return list(iter_route_contexts(app.routes))


def check_routes(app: FastAPI, extra_public: Iterable[str] = ()) -> None:
    """Refuse an app with a route that declares no permission (deny by default)."""
    from fastapi.routing import APIRoute
    from starlette.routing import Mount

    allowed_mounts = PUBLIC_MOUNTS | set(extra_public)
    missing = []
    for route in iter_routes(app):
        if isinstance(getattr(route, "original_route", route), APIRoute):
            if route_permission(route) is None:
                missing.append(f"{sorted(route.methods)} {route.path}")
        elif isinstance(getattr(route, "original_route", route), Mount):
            if route.path not in allowed_mounts:
                missing.append(f"mount {route.path}")
        elif getattr(route, "path", None) not in DOC_PATHS:
            missing.append(f"{type(route).__name__} {getattr(route, 'path', route)}")
    if missing:
        raise RuntimeError(
            "routes without an explicit permission (add require(...) or public()): "
            + ", ".join(missing)
        )
