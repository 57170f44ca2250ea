"""``run.log_model``: save a model with its flavor and keep the folder as a run artifact."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import NotFound
from modelyard.models._common import MODEL_FILE, FolderMeta, parse_model_meta

if TYPE_CHECKING:
    from modelyard.store.entities import RunArtifact
    from modelyard.tracking import ActiveRun
    from modelyard.workspace import Workspace


@dataclass(frozen=True)
class LoggedModel:
    """A model folder stored as an artifact of a run, ready to be registered."""

    run_id: str
    artifact: str  # the run artifact's name ("model")
    digest: str  # manifest digest of the folder
    flavor: str
    signature: dict[str, Any] | None
    requirements: dict[str, str] | None


def log_model(
    run: ActiveRun,
    model: Any,
    name: str = "model",
    *,
    input_example: Any = None,
    signature: Any = None,
    trusted_pickle: bool = False,
) -> LoggedModel:
    """Save ``model`` with :func:`modelyard.flavors.save_model` and log the folder as the
    run artifact ``name``: content-addressed, recorded on the run, with a lineage arrow.

    The folder is written to a temporary place first, so nothing half-saved is ever logged.
    """
    from modelyard.flavors import save_model

    ws = run.workspace
    tmp_root = ws.state_dir / "tmp"
    tmp_root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tmp_root, prefix="log-model-") as tmp:
        folder = Path(tmp) / "model"
        save_model(
            model,
            folder,
            input_example=input_example,
            signature=signature,
            trusted_pickle=trusted_pickle,
        )
        meta = parse_model_meta((folder / MODEL_FILE).read_bytes(), f"model {name!r}")
        digest = run.log_artifact(folder, name)
    return LoggedModel(run.id, name, digest, meta.flavor, meta.signature, meta.requirements)


def logged_models(ws: Workspace, run_id: str) -> list[RunArtifact]:
    """The run's folder artifacts that are saved models (they carry ``modelyard-model.json``)."""
    found = []
    for artifact in ws.store.runs.artifacts(run_id):
        if artifact.kind != "directory":
            continue
        manifest = ws.artifacts.read_manifest(artifact.digest)
        if any(e.path == MODEL_FILE for e in manifest.entries):
            found.append(artifact)
    return found


def read_stored_meta(ws: Workspace, digest: str, where: str) -> FolderMeta:
    """The metadata of a model folder already in the artifact store."""
    manifest = ws.artifacts.read_manifest(digest)
    for entry in manifest.entries:
        if entry.path == MODEL_FILE:
            return parse_model_meta(ws.artifacts.get_bytes(entry.digest), where)
    raise NotFound(f"{where} is not a saved model: it has no {MODEL_FILE}")
