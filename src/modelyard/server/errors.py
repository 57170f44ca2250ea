"""Domain errors to HTTP: one table, as Starlette's ``exception_handlers`` do.

Bodies are ``{"error": <class name>, "message": <text>}``. Unexpected exceptions become a bare
500 whose body names no internals (the traceback goes to the server log, never to the client,
and request headers are never logged).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Final

from modelyard import errors

if TYPE_CHECKING:
    from fastapi import FastAPI, Request
    from starlette.responses import Response

log = logging.getLogger("modelyard.server")


Unauthorized = errors.Unauthorized
Forbidden = errors.Forbidden

# Most specific first: the first matching class decides the status.
STATUS: Final[tuple[tuple[type[errors.ModelyardError], int], ...]] = (
    (Unauthorized, 401),
    (Forbidden, 403),
    (errors.GateFailed, 409),
    (errors.PayloadTooLarge, 413),
    (errors.InsufficientStorage, 507),
    (errors.UsageError, 422),
    (errors.NotFound, 404),
    (errors.AlreadyExists, 409),
    (errors.CorruptArtifact, 422),
    (errors.RunError, 409),
    (errors.DataError, 422),
    (errors.StoreUnavailable, 503),
    (errors.ArtifactUnavailable, 503),
    (errors.ModelyardError, 400),
)


def status_of(exc: errors.ModelyardError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 400  # pragma: no cover - ModelyardError is the last row


def install(app: FastAPI) -> None:
    from fastapi.exceptions import RequestValidationError
    from starlette.responses import JSONResponse

    async def on_domain_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, errors.ModelyardError)
        _count_store_error(request, exc)
        body: dict[str, object] = {"error": type(exc).__name__, "message": exc.message}
        if isinstance(exc, errors.GateFailed):
            body["failed_checks"] = exc.failed_checks
        headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
        return JSONResponse(body, status_code=status_of(exc), headers=headers)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        # Only locations and messages: FastAPI's default echoes the input back, which may hold
        # a secret the caller mistyped into the wrong field.
        details = [
            {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in exc.errors()
        ]
        return JSONResponse(
            {"error": "InvalidRequest", "message": "invalid request", "details": details},
            status_code=422,
        )

    async def on_unexpected(request: Request, exc: Exception) -> Response:
        _count_store_error(request, exc)
        log.error(
            "unhandled %s on %s %s",
            type(exc).__name__,
            request.method,
            request.url.path,
            exc_info=exc,
        )
        return JSONResponse(
            {"error": "InternalError", "message": "internal server error"}, status_code=500
        )

    app.add_exception_handler(errors.ModelyardError, on_domain_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(Exception, on_unexpected)


def _count_store_error(request: Request, exc: Exception) -> None:
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:
        metrics.store_error(exc)
