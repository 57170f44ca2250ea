"""The model server: the runtime inside every model image.

Imports only what serving needs (uvicorn, orjson, prometheus-client, numpy and the model's own
flavor library) — never the metadata store, the CLI or the build tools; a test checks it.
"""

from __future__ import annotations

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
