"""Load a pipeline definition from a Python file."""

from __future__ import annotations

import hashlib
import importlib.util
import sys
from pathlib import Path

from modelyard.errors import NotFound, PipelineDefinitionError
from modelyard.pipeline.step import Pipeline


def load_pipeline(path: Path, name: str | None = None) -> Pipeline:
    """Import ``path`` and return its :class:`Pipeline` (the one named ``name`` when the file
    defines several). The file's folder goes on ``sys.path`` so it can import its siblings."""
    path = path.resolve()
    if not path.is_file():
        raise NotFound(f"pipeline file {path} does not exist")
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    # A stable module name per file: the same file loaded again replaces its earlier module.
    module_name = "_modelyard_pipeline_" + hashlib.sha256(str(path).encode()).hexdigest()[:16]
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise PipelineDefinitionError(f"{path}: cannot be imported as a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except PipelineDefinitionError:
        raise
    except Exception as exc:
        del sys.modules[module_name]
        raise PipelineDefinitionError(
            f"{path}: importing the pipeline file failed: {type(exc).__name__}: {exc}"
        ) from exc
    found = [v for v in vars(module).values() if isinstance(v, Pipeline)]
    if name is not None:
        found = [p for p in found if p.name == name]
    if len(found) != 1:
        names = ", ".join(sorted(p.name for p in found)) or "none"
        want = f" named {name!r}" if name else ""
        raise PipelineDefinitionError(
            f"{path}: expected exactly one Pipeline{want} at module level, found {names}"
        )
    return found[0]
