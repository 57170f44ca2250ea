"""Generic Python models: any class with ``load(context)`` and ``predict(inputs)``.

Saved as source, not as a pickle: the class's module file is copied into the model folder with
the class name, plus the files the model names in its ``artifacts`` mapping. Loading imports
that module file from the folder, builds the class without arguments and calls
``load(context)`` — the model's state comes from its artifacts, never from unpickling.
"""

from __future__ import annotations

import hashlib
import importlib.util
import inspect
import shutil
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.errors import FlavorError
from modelyard.refs import validate_name

CODE_DIR = "code"
ARTIFACTS_DIR = "artifacts"


@dataclass(frozen=True)
class PythonModelContext:
    """What ``load(context)`` receives: the model folder and its artifacts by name."""

    model_dir: Path
    artifacts: dict[str, Path] = field(default_factory=dict)


def is_python_model(model: Any) -> bool:
    return callable(getattr(model, "load", None)) and callable(getattr(model, "predict", None))


def save(model: Any, folder: Path) -> tuple[list[str], dict[str, Any]]:
    cls = type(model)
    if cls.__module__ == "__main__":
        raise FlavorError(
            f"{cls.__name__} is defined in __main__; move it into a module file so that the "
            "model folder can carry its code"
        )
    source = inspect.getsourcefile(cls)
    if source is None:
        raise FlavorError(f"cannot find the source file of {cls.__module__}.{cls.__qualname__}")
    module_file = f"{CODE_DIR}/{cls.__module__.rpartition('.')[2]}.py"
    (folder / CODE_DIR).mkdir()
    shutil.copyfile(source, folder / module_file)
    files = [module_file]
    artifacts: dict[str, str] = {}
    declared = getattr(model, "artifacts", None) or {}
    if not isinstance(declared, Mapping):
        raise FlavorError("a python model's `artifacts` must map names to file or folder paths")
    for name, src in declared.items():
        validate_name(str(name), "artifact name")
        src_path = Path(src)
        dest = folder / ARTIFACTS_DIR / str(name)
        dest.parent.mkdir(exist_ok=True)
        if src_path.is_dir():
            shutil.copytree(src_path, dest)
            files += [p.relative_to(folder).as_posix() for p in dest.rglob("*") if p.is_file()]
        elif src_path.is_file():
            shutil.copyfile(src_path, dest)
            files.append(dest.relative_to(folder).as_posix())
        else:
            raise FlavorError(f"artifact {name!r}: {src_path} does not exist")
        artifacts[str(name)] = f"{ARTIFACTS_DIR}/{name}"
    extra = {"module_file": module_file, "class": cls.__qualname__, "artifacts": artifacts}
    return files, extra


def load(folder: Path, extra: dict[str, Any]) -> Any:
    module_file = folder / str(extra["module_file"])
    if not module_file.resolve().is_relative_to(folder.resolve()):
        raise FlavorError(f"module file {extra['module_file']!r} is outside the model folder")
    # A unique module name per folder so two models with the same file name do not collide.
    digest = hashlib.sha256(str(module_file.resolve()).encode()).hexdigest()[:12]
    mod_name = f"modelyard_model_{module_file.stem}_{digest}"
    spec = importlib.util.spec_from_file_location(mod_name, module_file)
    if spec is None or spec.loader is None:
        raise FlavorError(f"cannot import {module_file}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[mod_name] = module
    try:
        spec.loader.exec_module(module)
        obj: Any = module
        for part in str(extra["class"]).split("."):
            obj = getattr(obj, part)
        instance = obj()
        artifacts = {
            name: _inside(folder, rel) for name, rel in dict(extra.get("artifacts", {})).items()
        }
        instance.load(PythonModelContext(model_dir=folder, artifacts=artifacts))
    except FlavorError:
        sys.modules.pop(mod_name, None)
        raise
    except Exception as exc:
        sys.modules.pop(mod_name, None)  # no half-initialised module left for the next load
        raise FlavorError(f"cannot load python model from {module_file}: {exc!r}") from exc
    return instance


def _inside(folder: Path, rel: object) -> Path:
    """An artifact path from the model's metadata, refused if it leaves the model folder."""
    path = (folder / str(rel)).resolve()
    if not path.is_relative_to(folder.resolve()):
        raise FlavorError(f"artifact path {rel!r} is outside the model folder")
    return path
