"""Cache keys: a step is skipped when nothing that could change its result has changed.

The key covers the step's *code* (its source, plus the source of every project-local function,
class and module it references, followed transitively — so editing a helper in ``features.py``
invalidates the steps that call it, while editing an unrelated step does not), its parameters,
the digests of its inputs, the state of what it declared it reads outside the pipeline (files,
datasets, models: see :mod:`.reads`), and the environment (interpreter and installed package
versions).
"Project-local" means defined in a file under the project folder and outside any
``site-packages``: library code is covered by the environment instead.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from modelyard.pipeline.step import StepSpec

CACHE_FORMAT = 1


def cache_key(
    *,
    pipeline: str,
    step: StepSpec,
    code_digest: str,
    params: Mapping[str, Any],
    inputs: Mapping[str, str],
    environment: str,
    reads: Mapping[str, str] | None = None,
) -> str:
    doc: dict[str, Any] = {
        "format": CACHE_FORMAT,
        "pipeline": pipeline,
        "step": step.name,
        "outputs": list(step.outputs),
        "pickle": step.pickle,
        "code": code_digest,
        "params": dict(sorted(params.items())),
        "inputs": dict(sorted(inputs.items())),
        "environment": environment,
    }
    if reads:  # absent for steps that read nothing outside: their keys stay as they were
        doc["reads"] = dict(sorted(reads.items()))
    raw = json.dumps(doc, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(raw.encode()).hexdigest()


def code_digest(fn: Any, project_root: Path) -> str:
    """Hash of ``fn``'s source and the project-local code it reaches."""
    h = hashlib.sha256()
    for name, source in sorted(_collect_sources(fn, project_root.resolve()).items()):
        h.update(name.encode() + b"\0" + source.encode() + b"\0")
    return "sha256:" + h.hexdigest()


@functools.cache
def environment_digest() -> str:
    """Interpreter plus exact installed packages; computed once per process (it walks every
    installed distribution)."""
    from modelyard.tracking.environment import current_environment

    return "sha256:" + hashlib.sha256(current_environment().to_bytes()).hexdigest()


def _collect_sources(fn: Any, root: Path) -> dict[str, str]:
    sources: dict[str, str] = {}
    pending: list[Any] = [fn]
    seen: set[int] = set()
    while pending:
        obj = pending.pop()
        if id(obj) in seen:
            continue
        seen.add(id(obj))
        # The step itself is always hashed, even from a pipeline file outside the workspace.
        if obj is not fn and not _is_local(obj, root):
            continue
        key = _qualname(obj, root)
        try:
            sources[key] = inspect.getsource(obj)
        except (OSError, TypeError):
            continue
        if isinstance(obj, types.ModuleType):
            continue  # a whole module's source is already in the hash
        for name, value in _referenced(obj):
            if isinstance(value, _CONSTANT_TYPES):
                # module-level settings (THRESHOLD = 0.8) change results as much as code does
                sources[f"{key}->{name}"] = repr(value)
            elif isinstance(value, _CONTAINER_TYPES):
                # ... and so do FEATURES = [...] or CONFIG = {...}
                sources[f"{key}->{name}"] = _stable_repr(value)
            else:
                pending.append(value)
    return sources


_CONSTANT_TYPES = (int, float, str, bytes, bool, tuple, frozenset, type(None))
_CONTAINER_TYPES = (list, dict, set)


def _stable_repr(value: Any) -> str:
    """The same text for equal containers, whatever their insertion order (sets, dict keys)."""
    try:
        return json.dumps(value, sort_keys=True, default=repr)
    except (TypeError, ValueError):  # non-string dict keys, cycles
        return repr(sorted(value, key=repr)) if isinstance(value, set) else repr(value)


def _referenced(obj: Any) -> list[tuple[str, Any]]:
    """Globals a function (or the methods of a class) names, resolved in its module."""
    if isinstance(obj, type):
        out: list[tuple[str, Any]] = []
        for member in vars(obj).values():
            func = getattr(member, "__func__", member)
            if isinstance(func, types.FunctionType):
                out.extend(_referenced(func))
        return out
    func = inspect.unwrap(obj) if callable(obj) else obj
    code = getattr(func, "__code__", None)
    glb = getattr(func, "__globals__", None)
    if code is None or glb is None:
        return []
    names: set[str] = set()
    stack = [code]
    while stack:
        c = stack.pop()
        names.update(c.co_names)
        stack.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
    # A referenced project module (helpers.clean) is hashed whole.
    return [(name, glb[name]) for name in sorted(names) if name in glb]


def _is_local(obj: Any, root: Path) -> bool:
    if not isinstance(obj, types.FunctionType | type | types.ModuleType):
        return False
    try:
        src = inspect.getsourcefile(obj)
    except TypeError:
        return False
    if src is None:
        return False
    path = Path(src).resolve()
    if "site-packages" in path.parts or "dist-packages" in path.parts:
        return False
    return path == root or root in path.parents


def _qualname(obj: Any, root: Path) -> str:
    """File (relative to the project) and qualified name: stable across processes, unlike the
    module name a pipeline file gets when it is loaded by path."""
    src = Path(inspect.getsourcefile(obj) or "").resolve()
    qual = "" if isinstance(obj, types.ModuleType) else getattr(obj, "__qualname__", "")
    where = src.relative_to(root).as_posix() if src.is_relative_to(root) else src.name
    return f"{where}:{qual}"
