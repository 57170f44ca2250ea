"""Keep a model server's process lean: hide pandas from models that never see a DataFrame.

scikit-learn imports pandas at import time whenever it is installed (``sklearn.utils.fixes``),
and pyarrow (the prediction log) imports it lazily on first use; either way a server for a
tensor-signature model pays ~60 MiB per worker and part of its cold start for a library it
never calls. A finder at the front of ``sys.meta_path`` makes ``import pandas`` fail in such a
server process, so both libraries take their no-pandas paths (they treat pandas as not
installed; nothing is left half-imported). Only the server entrypoints call this, never
``create_app``: the process must belong to the server, because the choice lasts its lifetime.
"""

from __future__ import annotations

import importlib.abc
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger("modelyard.serving")

HIDDEN = ("pandas",)


class HiddenModules(importlib.abc.MetaPathFinder):
    """A meta-path finder refusing to import ``names`` (and their submodules)."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names = frozenset(names)

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> None:
        if fullname.partition(".")[0] in self.names:
            raise ModuleNotFoundError(
                f"{fullname} is not loaded in this model server: the model's signature is a "
                "tensor, so it is never given a DataFrame",
                name=fullname,
            )
        return None


def hide_unused_libraries(
    model_dir: Path, *, meta_path: list[Any] | None = None, modules: dict[str, Any] | None = None
) -> bool:
    """Hide pandas if the model in ``model_dir`` cannot need it; True if it was hidden.

    Not for ``python`` models (user code may import pandas for itself) nor column signatures
    (they are given DataFrames). A model folder that cannot be read is left to ``load_model``
    to report.
    """
    from modelyard.errors import FlavorError
    from modelyard.flavors.model import read_meta

    meta_path = sys.meta_path if meta_path is None else meta_path
    modules = sys.modules if modules is None else modules
    try:
        meta = read_meta(model_dir)
    except FlavorError:
        return False
    if meta.flavor == "python" or meta.signature.kind != "tensor":
        return False
    if any(name in modules for name in HIDDEN):
        return False
    if not any(isinstance(f, HiddenModules) for f in meta_path):
        meta_path.insert(0, HiddenModules(HIDDEN))
    logger.debug("pandas hidden from this server: the model takes tensors only")
    return True
