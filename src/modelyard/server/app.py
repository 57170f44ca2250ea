"""The team server: a REST API over one workspace's store and artifacts, and the dashboard.

``create_app`` builds the ASGI app without touching the database; routers are attached here and
:func:`modelyard.server.auth.check_routes` refuses the app if any route forgot its permission.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.server.auth import DEFAULT_AUTH, AuthConfig, check_routes, public
from modelyard.server.limits import ServerLimits

if TYPE_CHECKING:
    from fastapi import FastAPI

    from modelyard.workspace import Workspace

API_PREFIX = "/api/v1"
STATIC_DIR = Path(__file__).parent / "static"


def create_app(
    workspace: Workspace,
    *,
    auth: AuthConfig | None = DEFAULT_AUTH,
    static_dir: Path | None = None,
    limits: ServerLimits | None = None,
) -> FastAPI:
    """The server's ASGI app. ``auth=None`` turns authentication off (every caller is an
    admin): only for loopback development, which ``modelyard server`` enforces. ``limits``
    (default :class:`ServerLimits`, which allows any ``Host``) are enforced before any route
    runs."""
    from fastapi import FastAPI

    from modelyard import __version__
    from modelyard.server import errors, routers
    from modelyard.server import limits as server_limits
    from modelyard.server import metrics as server_metrics

    app = FastAPI(
        title="modelyard",
        version=__version__,
        description="REST API of a modelyard team server. Authenticate with "
        "`Authorization: Bearer <token>` (see `modelyard tokens create`).",
    )
    app.state.workspace = workspace
    app.state.auth = auth
    app.state.limits = limits or ServerLimits()
    errors.install(app)
    server_limits.install(app, app.state.limits)
    server_metrics.install(app)  # outermost: counts what the guard refuses too

    @app.get("/api/health", tags=["server"], dependencies=[public()])
    def health() -> dict[str, Any]:
        """Liveness: answers without a token and without touching the database."""
        return {"status": "ok", "version": __version__, "auth": auth is not None}

    for router in routers.all_routers():
        app.include_router(router, prefix=API_PREFIX)
    _mount_static(app, static_dir or STATIC_DIR)
    check_routes(app)
    return app


def _mount_static(app: FastAPI, folder: Path) -> None:
    """The dashboard bundle at ``/ui`` (and its ``index.html`` at ``/``), when it is built."""
    from fastapi.responses import FileResponse, JSONResponse
    from starlette.responses import Response
    from starlette.staticfiles import StaticFiles

    index = folder / "index.html"

    @app.get("/", include_in_schema=False, dependencies=[public()])
    def root() -> Response:
        if index.is_file():
            return FileResponse(index)
        return JSONResponse({"message": "modelyard server; the API is under /api/v1"})

    if folder.is_dir():
        app.mount("/ui", StaticFiles(directory=folder, html=True), name="ui")
