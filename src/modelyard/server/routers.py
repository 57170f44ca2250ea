"""Every router of the server, in one list so ``create_app`` and the tests see the same set."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import APIRouter


def all_routers() -> list[APIRouter]:
    from modelyard.server import artifacts_api, auth_api, direct_api, store_api

    routers: list[APIRouter] = [
        store_api.router(),
        artifacts_api.router(),
        direct_api.router(),
        auth_api.router(),
    ]
    import importlib

    try:  # the dashboard's read endpoints, when that module exists
        ui_api = importlib.import_module("modelyard.server.ui_api")
    except ModuleNotFoundError as exc:
        if exc.name != "modelyard.server.ui_api":
            raise
    else:
        routers.append(ui_api.router)
    return routers
