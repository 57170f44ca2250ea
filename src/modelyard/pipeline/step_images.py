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
pod's image, and a step with ``requirements`` and no ``image`` runs in the image that
``modelyard pipeline build-images PIPELINE.py --registry HOST[/PREFIX]`` built (as the docker
runner does) and pushed. That command records each pushed image, as ``REPO@sha256:...``, in
``.modelyard/step-images.json`` under the hash of what the image is made of
(:func:`step_image_key`: base image, requirements,
modelyard's version, the project's code). Compiling looks the step up by the same hash: a step
never pushed, or whose requirements or code changed since, is refused, naming the command.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.metadata as md
import json
import os
import re
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import ConfigError, InvalidValue, ModelyardError

if TYPE_CHECKING:
    from modelyard.pipeline.graph import Graph
    from modelyard.workspace import Workspace

DEFAULT_REQUIREMENTS = ("modelyard",)  # every step image holds modelyard (its worker)
_SKIP_DIRS = {".git", ".modelyard", ".venv", "venv", "node_modules", "__pycache__", "build", "dist"}
_MAX_CODE_FILES = 2000
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_./-]*\Z")
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


def own_requirements(own: Sequence[str]) -> tuple[str, ...]:
    """What the image of a step with requirements ``own`` holds: modelyard, ``own`` and what
    modelyard needs to serialize their values."""
    return with_implied((*DEFAULT_REQUIREMENTS, *own))


def base_image_of(workspace: Workspace) -> str:
    """The base image the docker runner builds step images on (``[docker] base_image``)."""
    from modelyard.images import DEFAULT_BASE_IMAGE
    from modelyard.images import validate as v

    value = workspace.settings.section("docker").get("base_image")
    if value is not None and not isinstance(value, str):
        raise ConfigError("[docker] base_image must be a string")
    return v.check_image_ref("base image", value or DEFAULT_BASE_IMAGE)


def step_image_key(pipeline_file: Path, base_image: str, requirements: Sequence[str]) -> str:
    """What a step image is made of, as a hash: the base image, the requirements as listed,
    modelyard's version and the project's code. ``pipeline build-images`` records a pushed
    image under it; a compile whose key differs (requirements or code changed) refuses it."""
    from modelyard._version import __version__

    digest = hashlib.sha256(json.dumps([base_image, list(requirements), __version__]).encode())
    for rel, path in project_code(pipeline_file.resolve().parent):
        digest.update(rel.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def project_code(root: Path) -> Iterable[tuple[str, Path]]:
    """The project's Python files next to the pipeline file (not its data, venv or state)."""
    count = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIP_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if not name.endswith(".py"):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if not _PLAIN_PATH.match(rel):
                continue  # not importable anyway; keeps odd names out of the build context
            count += 1
            if count > _MAX_CODE_FILES:
                raise ConfigError(
                    f"more than {_MAX_CODE_FILES} Python files under {root}; put the pipeline "
                    "in a project folder of its own"
                )
            yield rel, path


PUSHED_FILE = "step-images.json"  # in the workspace's state folder (.modelyard)


def pushed_images(workspace: Workspace) -> dict[str, dict[str, Any]]:
    """The step images ``pipeline build-images`` pushed: ``{key: {"ref", "steps", ...}}``."""
    path = workspace.state_dir / PUSHED_FILE
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise ConfigError(
            f"{path} is not readable JSON ({exc}); delete it and run "
            "'modelyard pipeline build-images' again"
        ) from None
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, dict):
        raise ConfigError(f"{path} holds no 'images' object; delete it and build again")
    return {
        k: v for k, v in images.items() if isinstance(v, dict) and isinstance(v.get("ref"), str)
    }


def record_pushed(
    workspace: Workspace, key: str, ref: str, steps: Sequence[str], requirements: Sequence[str]
) -> None:
    """Record ``ref`` (``REPO@sha256:...``) as the step image made of ``key`` (atomically)."""
    images = pushed_images(workspace)
    images[key] = {
        "ref": ref,
        "steps": sorted(steps),
        "requirements": list(requirements),
        "pushed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    path = workspace.state_dir / PUSHED_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{PUSHED_FILE}.{os.getpid()}.part")
    tmp.write_text(json.dumps({"images": images}, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def compiled_images(
    workspace: Workspace, graph: Graph, default: str, pipeline_file: Path
) -> dict[str, str]:
    """Each step's pod image in a compiled pipeline: its own ``image``, the image
    ``pipeline build-images`` pushed for its ``requirements``, or ``default``. A step with
    requirements whose image was not pushed, or was pushed before its requirements or the
    project's code changed, is refused with the command that pushes it."""
    out = {}
    pushed: dict[str, dict[str, Any]] | None = None
    for name, env in step_environments(workspace, graph).items():
        if env.image is None and env.requirements:
            pushed = pushed_images(workspace) if pushed is None else pushed
            wanted = own_requirements(env.requirements)
            key = step_image_key(pipeline_file, base_image_of(workspace), wanted)
            if key in pushed:
                out[name] = str(pushed[key]["ref"])
                continue
            raise ConfigError(_not_pushed(name, pipeline_file, pushed))
        out[name] = env.image or default
    return out


def _not_pushed(step: str, pipeline_file: Path, pushed: Mapping[str, Mapping[str, Any]]) -> str:
    old = sorted(
        (str(e.get("pushed_at", "")), str(e["ref"]))
        for e in pushed.values()
        if step in (e.get("steps") or ())
    )
    registry = "HOST[/PREFIX]"
    if old:
        why = (
            f"the image pushed for it ({old[-1][1]}) was built before its requirements or "
            "the project's code changed"
        )
        registry = old[-1][1].split("@")[0].rsplit("/", 2)[0]
    else:
        why = "its image was never built and pushed (a cluster cannot build it)"
    return (
        f"step {step!r} has requirements of its own but no image: {why}. Build and push it:\n"
        f"  modelyard pipeline build-images {pipeline_file} --registry {registry}\n"
        f"or set a prebuilt one:\n  [pipeline.steps.{step}]\n"
        f'  image = "registry.example/steps-{step}:1"'
    )
