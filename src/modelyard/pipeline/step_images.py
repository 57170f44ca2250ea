"""Which image each step runs in: the pipeline's shared step image, or one of the step's own.

A step gets its own image from ``@step(image=..., requirements=[...])`` or, overriding the
decorator key by key, from the workspace config::

    [pipeline.steps.train]
    requirements = ["scikit-learn", "skops"]   # the docker runner builds the step's image
    # image = "registry.example/train:3"       # or a prebuilt one (docker, Argo, Kubeflow)

``image`` is used as it is. ``requirements`` are installed packages: the docker runner locks them
(with everything they need, at the versions installed here), adds modelyard and the project's
code and builds an image holding only that, tagged by the hash of its content. A step with
neither runs in the shared image, whose packages are ``[docker] requirements`` or, when that
is not set, the installed distributions the project's code imports (:func:`detect_requirements`).
Either way a step that hands scikit-learn estimators to modelyard's serializers gets ``skops``.

A compiled Argo or Kubeflow pipeline cannot build images: there a step's own ``image`` is its
pod's image, and ``requirements`` without an ``image`` is refused at compile time.
"""

from __future__ import annotations

import ast
import importlib.metadata as md
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import ConfigError, InvalidValue, ModelyardError

if TYPE_CHECKING:
    from modelyard.pipeline.graph import Graph
    from modelyard.workspace import Workspace

# modelyard serializes scikit-learn estimators with skops: a step image with the one has both.
_IMPLIED = {"scikit-learn": ("skops",)}


@dataclass(frozen=True)
class StepEnvironment:
    """A step's own image, or the packages of its own image; both empty: the shared image."""

    image: str | None = None
    requirements: tuple[str, ...] = ()

    @property
    def shared(self) -> bool:
        return self.image is None and not self.requirements


def check_image(value: Any, where: str) -> str:
    from modelyard.images import validate

    if not isinstance(value, str):
        raise InvalidValue(f"{where}: image must be a string, got {type(value).__name__}")
    try:
        return validate.check_image_ref(f"{where} image", value)
    except ModelyardError as exc:
        raise InvalidValue(exc.message) from None


def check_requirements(values: Any, where: str) -> tuple[str, ...]:
    """Requirement strings (``name``, ``name[extra]``, ``name>=1.2``), no URLs or markers."""
    from packaging.requirements import InvalidRequirement, Requirement

    if isinstance(values, str) or not isinstance(values, Sequence):
        raise InvalidValue(f"{where}: requirements must be a list of package names")
    out = []
    for value in values:
        if not isinstance(value, str):
            raise InvalidValue(f"{where}: requirement {value!r} is not a string")
        try:
            req = Requirement(value)
        except InvalidRequirement as exc:
            raise InvalidValue(f"{where}: {value!r} is not a requirement ({exc})") from None
        if req.url or req.marker:
            raise InvalidValue(f"{where}: {value!r}: name an installed package (no URL or marker)")
        out.append(str(req))
    return tuple(out)


def step_environments(workspace: Workspace, graph: Graph) -> dict[str, StepEnvironment]:
    """Every step's environment: ``[pipeline.steps.NAME]`` over ``@step(...)``."""
    tables = workspace.settings.section("pipeline").get("steps", {})
    if not isinstance(tables, Mapping):
        raise ConfigError("[pipeline.steps] in the workspace config must hold one table per step")
    out = {}
    for name in graph.order:
        spec = graph.nodes[name].spec
        table = tables.get(name, {})
        if not isinstance(table, Mapping):
            raise ConfigError(f"[pipeline.steps.{name}] must be a table")
        unknown = sorted(set(table) - {"image", "requirements"})
        if unknown:
            raise ConfigError(
                f"[pipeline.steps.{name}]: unknown key {unknown[0]!r} (image, requirements)"
            )
        where = f"[pipeline.steps.{name}]"
        image = check_image(table["image"], where) if "image" in table else spec.image
        if "requirements" in table:
            requirements = check_requirements(table["requirements"], where)
        else:
            requirements = spec.requirements
        out[name] = StepEnvironment(image=image, requirements=requirements)
    return out


def with_implied(requirements: Iterable[str]) -> tuple[str, ...]:
    """``requirements`` plus what modelyard needs to handle their values (installed ones)."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    out = list(dict.fromkeys(requirements))
    names = {canonicalize_name(Requirement(r).name) for r in out}
    for name in sorted(names):
        for extra in _IMPLIED.get(name, ()):
            if canonicalize_name(extra) not in names and _installed(extra):
                out.append(extra)
    return tuple(out)


def detect_requirements(files: Iterable[Path]) -> tuple[str, ...]:
    """The installed distributions that ``files`` import (anywhere: steps import inside their
    functions), standard library and modelyard itself left out, sorted."""
    from packaging.utils import canonicalize_name

    modules: set[str] = set()
    for path in files:
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):
            continue  # not importable as it is: the step fails the same way on the host
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                modules.add(node.module.split(".")[0])
    owners = md.packages_distributions()
    found = set()
    for module in modules - set(sys.stdlib_module_names):
        for dist in owners.get(module, []):
            if canonicalize_name(dist) != "modelyard":
                found.add(dist)
    return tuple(sorted(found, key=canonicalize_name))


def _installed(name: str) -> bool:
    try:
        md.distribution(name)
    except md.PackageNotFoundError:
        return False
    return True


def compiled_images(workspace: Workspace, graph: Graph, default: str) -> dict[str, str]:
    """Each step's pod image in a compiled pipeline: its own ``image`` or ``default``. A step
    that has only ``requirements`` is refused: nothing on the cluster would build its image."""
    out = {}
    for name, env in step_environments(workspace, graph).items():
        if env.image is None and env.requirements:
            raise ConfigError(
                f"step {name!r} has requirements of its own but no image: a cluster cannot "
                "build it. Build and push its image (the docker runner builds it as "
                f"modelyard-step/…), then set it:\n  [pipeline.steps.{name}]\n"
                '  image = "registry.example/steps-' + name + ':1"'
            )
        out[name] = env.image or default
    return out
