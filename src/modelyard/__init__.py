"""modelyard: from data to a versioned model service, watched and retrained.

The public Python API. Importing this package is cheap: heavy modules load on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelyard._version import __version__
from modelyard.errors import ModelyardError
from modelyard.refs import Ref
from modelyard.workspace import Workspace

if TYPE_CHECKING:
    from modelyard import data
    from modelyard.batch import predict
    from modelyard.tracking import ActiveRun, start_run

__all__ = [
    "ActiveRun",
    "ModelyardError",
    "Ref",
    "Workspace",
    "__version__",
    "data",
    "predict",
    "start_run",
]

_LAZY = {
    "data": ("modelyard.data", None),
    "predict": ("modelyard.batch", "predict"),
    "start_run": ("modelyard.tracking", "start_run"),
    "ActiveRun": ("modelyard.tracking", "ActiveRun"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module_name, attr = _LAZY[name]
        module = importlib.import_module(module_name)
        value = module if attr is None else getattr(module, attr)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'modelyard' has no attribute {name!r}")
