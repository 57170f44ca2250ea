"""What goes into a model image, and the self-contained build context for it.

The image installs exactly the training run's versions (its environment lock) of what the
model's flavor and the serving runtime need — not the whole training environment — from a
wheelhouse prepared on the host, then modelyard's runtime, then the model folder last, so a new
model version with the same dependencies rebuilds one layer.
"""

from __future__ import annotations

import hashlib
import json
import sys
import zipfile
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard import image_contract as contract
from modelyard.errors import InvalidParameter

if TYPE_CHECKING:
    from modelyard.images import BuildContext, ImageSpec, Wheelhouse
    from modelyard.store.models_entities import ModelVersion
    from modelyard.workspace import Workspace

DEFAULT_BASE_IMAGE = "python:3.11-slim"
# The image contract (modelyard.image_contract), under the names this module always exported.
MODEL_DIR = contract.MODEL_DIR
SERVE_PORT = contract.PORT
PREDICTION_DIR = contract.PREDICTION_LOG_DIR
READY_PATH = contract.READY_PATH
# No curl in a minimal base: the health check is one Python expression (no ';', which the
# Dockerfile validator refuses). urlopen raises on a non-2xx answer, so the exit status is 1.
HEALTHCHECK = (
    "python",
    "-c",
    f"__import__('urllib.request').request.urlopen('http://127.0.0.1:{SERVE_PORT}{READY_PATH}', "
    "timeout=2)",
)
SERVING_EXTRA = "serve"


@dataclass(frozen=True)
class ModelImagePlan:
    """A resolved model version and everything its image is built from."""

    version: ModelVersion
    spec: ImageSpec
    wheelhouse: Wheelhouse
    tag: str
    lock: Mapping[str, str]


def default_base_image(ws: Workspace) -> str:
    """``[images] base_image`` of the workspace config, else ``python:3.11-slim``."""
    value = ws.settings.section("images").get("base_image")
    if value is not None and not isinstance(value, str):
        raise InvalidParameter("[images] base_image in the workspace config must be a string")
    return value or DEFAULT_BASE_IMAGE


def image_repository(model_name: str) -> str:
    """The local repository of a model's images: ``modelyard/<name>`` (lower case, as OCI
    references require)."""
    return f"modelyard/{model_name.lower()}"


def serving_lock(
    ws: Workspace, version: ModelVersion, without: Collection[str] = ()
) -> dict[str, str]:
    """Exact versions for the image: the closure of ``modelyard[serve]`` (less the roots named
    in ``without``) plus the flavor's requirements (names and dependencies as installed here),
    each at the version the training run recorded, else the version the model was saved with,
    else the one installed here."""
    from modelyard.images import lock_from_environment
    from modelyard.images.wheelhouse import canonical_name

    flavor_reqs = dict(version.requirements or {})
    left_out = {canonical_name(n) for n in without}
    roots = [r for r in serving_requirements() if canonical_name(r.split("[")[0]) not in left_out]
    closure = lock_from_environment([*roots, *sorted(flavor_reqs)])
    trained: dict[str, str] = {}
    if version.run_id is not None:
        run = ws.store.runs.get(version.run_id)
        if run.environment_digest:
            from modelyard.tracking import load_environment

            env = load_environment(ws, run.environment_digest)
            trained = {canonical_name(k): v for k, v in env.packages.items()}
    saved = {canonical_name(k): v for k, v in flavor_reqs.items()}
    return {
        name: trained.get(canonical_name(name)) or saved.get(canonical_name(name)) or host
        for name, host in closure.items()
    }


def serving_requirements() -> list[str]:
    """The requirements of modelyard's ``serve`` extra only (``modelyard[serve]`` would drag
    in the core install: the store, the CLI, pandas), markers evaluated for this interpreter."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    roots: list[str] = []
    for raw in md.distribution("modelyard").requires or []:
        req = Requirement(raw)
        if req.marker is None or not req.marker.evaluate({"extra": SERVING_EXTRA}):
            continue
        if req.marker.evaluate({"extra": ""}):
            continue  # a core requirement: the serving runtime does not import it
        extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
        roots.append(f"{req.name}{extras}")
    return roots


def runtime_wheel(wheelhouse_dir: Path) -> Path:
    """modelyard's own wheel with its declared dependencies removed.

    The full package declares the store, CLI and data libraries; the image's dependency layer
    already holds exactly the serving closure, so the runtime layer installs modelyard's code
    alone (``pip --no-index`` would otherwise look for SQLAlchemy and fail). Cached by content.
    """
    from modelyard.images import build_modelyard_wheel
    from modelyard.images.wheelhouse import _b64

    full = build_modelyard_wheel(wheelhouse_dir)
    target = wheelhouse_dir / "modelyard-runtime" / full.parent.name / full.name
    if target.is_file():
        return target
    files: list[tuple[str, bytes]] = []
    with zipfile.ZipFile(full) as zf:
        for info in zf.infolist():
            if info.filename.endswith("/RECORD"):
                continue
            data = zf.read(info)
            if info.filename.endswith(".dist-info/METADATA"):
                kept = [
                    line
                    for line in data.decode().split("\n")
                    if not line.startswith(("Requires-Dist:", "Provides-Extra:"))
                ]
                data = "\n".join(kept).encode()
            files.append((info.filename, data))
    record_name = next(n for n, _ in files if n.endswith(".dist-info/METADATA")).rsplit("/", 1)[0]
    record = [f"{n},sha256={_b64(hashlib.sha256(d).digest())},{len(d)}" for n, d in files]
    record.append(f"{record_name}/RECORD,,")
    files.append((f"{record_name}/RECORD", ("\n".join(record) + "\n").encode()))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as out:
        for name, data in files:
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            out.writestr(entry, data)
    tmp.replace(target)
    return target


def signature_digest(version: ModelVersion) -> str:
    """sha256 of the canonical signature JSON: equal signatures, equal label."""
    doc = json.dumps(version.signature or {}, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(doc.encode()).hexdigest()


def lineage_labels(ws: Workspace, version: ModelVersion) -> dict[str, str]:
    """``io.modelyard.*``: the model, its version, run, input datasets and digests. The
    datasets are those upstream of the version's run, so a pipeline-made version names the
    dataset its first step read (:mod:`modelyard.models.provenance`)."""
    from modelyard.models.provenance import provenance

    datasets = sorted(provenance(ws, version).datasets.values())
    return {
        "io.modelyard.model": version.name,
        "io.modelyard.version": str(version.version),
        "io.modelyard.run": version.run_id or "",
        "io.modelyard.datasets": ",".join(datasets),
        "io.modelyard.signature": signature_digest(version),
        "io.modelyard.model-digest": version.digest,
        "io.modelyard.flavor": version.flavor,
    }


def _stage_model(ws: Workspace, exported: Path, version: ModelVersion) -> Path:
    """A world-readable copy of the verified export: the artifact store keeps files
    read-only for its owner, and the image runs as an unprivileged user who must read them."""
    import shutil

    stage = ws.state_dir / "packaging" / version.name / str(version.version)
    if stage.exists():
        shutil.rmtree(stage)
    shutil.copytree(exported, stage, copy_function=shutil.copyfile)
    for path in [stage, *stage.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return stage


def plan_model_image(
    ref: str,
    *,
    workspace: Workspace | None = None,
    base_image: str | None = None,
    wheelhouse_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    without: Collection[str] = (),
) -> ModelImagePlan:
    """Resolve ``ref``, export (and verify) its folder, lock and fetch its wheels: everything
    up to the build. A missing or corrupted artifact fails here, before any image exists."""
    from modelyard.images import Healthcheck, ImageSpec, prepare_wheelhouse
    from modelyard.images import validate as v
    from modelyard.images.wheelhouse import default_wheelhouse_dir
    from modelyard.models import export_model, resolve
    from modelyard.models.trust import check_code_trust
    from modelyard.workspace import resolve as resolve_workspace

    ws = resolve_workspace(workspace)
    version = resolve(ref, ws)
    check_code_trust(version)  # an image of untrusted code is never built
    base = v.check_image_ref("base image", base_image or default_base_image(ws))
    model_dir = _stage_model(ws, export_model(ws, version), version)
    lock = serving_lock(ws, version, without)
    python = f"{sys.version_info.major}.{sys.version_info.minor}"
    house = prepare_wheelhouse(
        lock,
        wheelhouse_dir or default_wheelhouse_dir(),
        python_version=python,
        progress=progress,
    )
    run = ws.store.runs.get(version.run_id) if version.run_id else None
    entrypoint = [
        "python",
        "-m",
        "modelyard.serving",
        "--model-dir",
        MODEL_DIR,
        "--name",
        version.name,
        "--version",
        str(version.version),
        "--host",
        "0.0.0.0",
        "--port",
        str(SERVE_PORT),
    ]
    if version.code_trusted:
        entrypoint.append("--allow-pickle")
    spec = ImageSpec(
        base_image=base,
        requirements=lock,
        runtime_wheel=runtime_wheel(house.path),
        payload={"model": model_dir},
        labels=lineage_labels(ws, version),
        title=version.name,
        version=str(version.version),
        revision=run.git_commit if run else None,
        source=version.source,
        # The prediction log's folder is an environment variable, not a flag, so a platform
        # can move it (a pod with a read-only root points it at an emptyDir).
        env={contract.LOG_DIR_ENV: contract.PREDICTION_LOG_DIR},
        entrypoint=tuple(entrypoint),
        expose=(SERVE_PORT,),
        healthcheck=Healthcheck(command=HEALTHCHECK, interval_s=5, start_period_s=10),
    )
    tag = f"{image_repository(version.name)}:{version.version}"
    return ModelImagePlan(version=version, spec=spec, wheelhouse=house, tag=tag, lock=lock)


def write_model_context(
    ref: str,
    dest: Path,
    *,
    workspace: Workspace | None = None,
    base_image: str | None = None,
    wheelhouse_dir: Path | None = None,
) -> BuildContext:
    """Write ``dest`` as a build context a team's CI builds with plain ``docker build``:
    Dockerfile, wheels and model files, nothing outside it."""
    from modelyard.images import write_context

    plan = plan_model_image(
        ref, workspace=workspace, base_image=base_image, wheelhouse_dir=wheelhouse_dir
    )
    return write_context(plan.spec, dest, wheelhouse=plan.wheelhouse)
