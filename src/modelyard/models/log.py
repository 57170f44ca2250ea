"""Saved model folders among a run's artifacts: ``log_model`` (the same as ``run.log_model``),
finding them, and reading their metadata from the artifact store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelyard.errors import NotFound
from modelyard.tracking.model_folder import MODEL_FILE, FolderMeta, LoggedModel, parse_model_meta

if TYPE_CHECKING:
    from modelyard.store.tracking_entities import RunArtifact
    from modelyard.tracking import ActiveRun
    from modelyard.workspace import Workspace


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
    run artifact ``name``: content-addressed, recorded on the run, with a lineage arrow (the
    same as ``run.log_model``; nothing half-saved is ever logged)."""
    return run.log_model(
        model,
        name,
        input_example=input_example,
        signature=signature,
        trusted_pickle=trusted_pickle,
    )


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
