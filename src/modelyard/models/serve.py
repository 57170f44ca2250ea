"""Serve a registered version locally: export its folder (verified), then hand it to the
serving runtime. The runtime never sees the store; everything it needs is in the folder and
in the arguments built here."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import CorruptArtifact, InvalidParameter
from modelyard.hashing import digest_file

if TYPE_CHECKING:
    from modelyard.artifacts.manifest import Manifest
    from modelyard.flavors import LoadedModel
    from modelyard.store.models_entities import ModelVersion
    from modelyard.workspace import Workspace

SERVING_DIR = "serving"
PREDICTIONS_DIR = "predictions"


@dataclass(frozen=True)
class ServingPlan:
    """Everything ``serve`` hands to the runtime, resolved and exported."""

    version: ModelVersion
    model_dir: Path
    prediction_dir: Path
    allow_pickle: bool


def export_model(ws: Workspace, version: ModelVersion) -> Path:
    """``.modelyard/serving/<name>/<version>/``, holding exactly the registered files.

    An existing export is reused only if every file still hashes to its manifest digest and
    nothing was added; otherwise a fresh copy is exported beside it and swapped in, so a
    tampered or half-written folder is never served.
    """
    manifest = ws.artifacts.read_manifest(version.digest)
    target = ws.state_dir / SERVING_DIR / version.name / str(version.version)
    if target.is_dir() and _matches(target, manifest):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{version.version}-"))
    try:
        ws.artifacts.export_dir(version.digest, fresh)
        if not _matches(fresh, manifest):
            raise CorruptArtifact(version.digest, "the exported folder does not match")
        if target.exists():
            stale = target.with_name(f".{version.version}-stale-{os.getpid()}")
            os.replace(target, stale)
            shutil.rmtree(stale, ignore_errors=True)
        os.replace(fresh, target)
    except BaseException:
        with contextlib.suppress(OSError):
            shutil.rmtree(fresh)
        raise
    return target


def _matches(folder: Path, manifest: Manifest) -> bool:
    from modelyard.artifacts.manifest import walk_files
    from modelyard.errors import ArtifactError

    expected = {e.path: e.digest for e in manifest.entries}
    try:
        present = walk_files(folder)
    except ArtifactError:  # a symlink crept in
        return False
    if {rel for rel, _, _ in present} != set(expected):
        return False
    return all(digest_file(path) == expected[rel] for rel, path, _ in present)


def plan_serving(ref: str, workspace: Workspace | None = None) -> ServingPlan:
    """Resolve ``ref`` and export its folder; the permission to run the model's own code
    (pickle, Python source) comes only from an admin's recorded trust in its digest, never
    from the model files (:mod:`modelyard.models.trust`)."""
    from modelyard.models.resolve import resolve
    from modelyard.models.trust import check_code_trust
    from modelyard.workspace import resolve as resolve_workspace

    ws = resolve_workspace(workspace)
    version = resolve(ref, ws)
    check_code_trust(version)
    model_dir = export_model(ws, version)
    prediction_dir = ws.state_dir / PREDICTIONS_DIR / version.name
    prediction_dir.mkdir(parents=True, exist_ok=True)
    return ServingPlan(version, model_dir, prediction_dir, version.code_trusted)


def load(ref: str, workspace: Workspace | None = None) -> LoadedModel:
    """Load version ``ref`` in this process (for evaluation steps and notebooks). Pickled
    parts and Python code load only when an admin trusted the version in the registry."""
    from modelyard.flavors import load_model

    plan = plan_serving(ref, workspace)
    return load_model(plan.model_dir, allow_pickle=plan.allow_pickle)


def serve(
    ref: str,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    workers: int = 1,
    workspace: Workspace | None = None,
    **options: Any,
) -> None:
    """Serve ``ref`` (``churn@production``) until stopped. ``options`` go to the runtime's
    ``ServeConfig`` (batching, limits…), as do the prediction-log folder and pickle trust."""
    _refuse_trust_override(options)
    serve_plan(plan_serving(ref, workspace), host=host, port=port, workers=workers, **options)


def serve_plan(
    plan: ServingPlan, *, host: str, port: int, workers: int = 1, **options: Any
) -> None:
    """Run the serving runtime on an exported plan (see :func:`plan_serving`)."""
    from modelyard.serving import ServeConfig
    from modelyard.serving import serve as run_server

    config = ServeConfig(**_config_options(plan, workers, options))
    run_server(
        plan.model_dir,
        host=host,
        port=port,
        workers=workers,
        name=plan.version.name,
        version=str(plan.version.version),
        config=config,
    )


def _config_options(plan: ServingPlan, workers: int, options: dict[str, Any]) -> dict[str, Any]:
    """The runtime's config: the caller's options, then what the registry decides (the log
    folder, and pickle trust, which only the recorded trust mark can grant)."""
    _refuse_trust_override(options)
    return {
        **options,
        "log_dir": plan.prediction_dir,
        "allow_pickle": plan.allow_pickle,
        "workers": workers,
    }


def _refuse_trust_override(options: dict[str, Any]) -> None:
    if "allow_pickle" in options:
        raise InvalidParameter(
            "pickle trust comes from the registered version; use 'modelyard models trust'"
        )
