"""The model server: the runtime inside every model image.

Imports only what serving needs (uvicorn, orjson, prometheus-client, numpy and the model's own
flavor library) — never the metadata store, the CLI or the build tools; a test checks it.

The names below load on first use: a gunicorn master's hooks or a deploy validating a setting
import ``modelyard.serving.metrics`` or ``.config`` without paying for numpy and the app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelyard.serving.app import ModelServer, create_app, create_app_from_env
    from modelyard.serving.config import ServeConfig
    from modelyard.serving.predlog import read_feedback, read_predictions
    from modelyard.serving.runner import serve

__all__ = [
    "ModelServer",
    "ServeConfig",
    "create_app",
    "create_app_from_env",
    "read_feedback",
    "read_predictions",
    "serve",
]

_LAZY = {
    "ModelServer": "modelyard.serving.app",
    "create_app": "modelyard.serving.app",
    "create_app_from_env": "modelyard.serving.app",
    "ServeConfig": "modelyard.serving.config",
    "read_feedback": "modelyard.serving.predlog",
    "read_predictions": "modelyard.serving.predlog",
    "serve": "modelyard.serving.runner",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'modelyard.serving' has no attribute {name!r}")
