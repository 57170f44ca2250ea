"""Saved model folders among a run's artifacts: ``log_model`` (the same as ``run.log_model``),
finding them, and reading their metadata from the artifact store."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from modelyard.errors import NotFound
from modelyard.tracking.model_folder import MODEL_FILE, FolderMeta, LoggedModel, parse_model_meta

if TYPE_CHECKING:
    from modelyard.store.tracking_entities import RunArtifact
    from modelyard.tracking.run import ActiveRun
    from modelyard.workspace import Workspace


def log_model(run: ActiveRun, model: Any, name: str = "model", **options: Any) -> LoggedModel:
    """The same as ``run.log_model(model, name, ...)`` (:meth:`ActiveRun.log_model`), whose
    keyword ``options`` are ``input_example``, ``signature`` and ``trusted_pickle``."""
    return run.log_model(model, name, **options)


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
