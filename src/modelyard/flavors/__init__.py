"""Saving and loading models with their flavor, signature and requirements.

Imported by the model server inside every image, so it pulls in only numpy and orjson at import
time; each flavor's library (skops/scikit-learn, onnxruntime, pandas) loads when a model of that
flavor is saved or loaded.
"""

from __future__ import annotations

from modelyard.flavors.meta import META_FILE, ColumnSpec, ModelMeta, Signature
from modelyard.flavors.model import (
    CODE_FLAVORS,
    FLAVORS,
    LoadedModel,
    load_model,
    read_meta,
    runs_code,
    save_model,
)
from modelyard.flavors.python import PythonModelContext
from modelyard.flavors.signature import infer_signature

__all__ = [
    "CODE_FLAVORS",
    "FLAVORS",
    "META_FILE",
    "ColumnSpec",
    "LoadedModel",
    "ModelMeta",
    "PythonModelContext",
    "Signature",
    "infer_signature",
    "load_model",
    "read_meta",
    "runs_code",
    "save_model",
]
