"""A saved model folder as tracking sees it: the metadata file every folder carries, read
without importing any flavor library, and what ``run.log_model`` returns."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from modelyard.errors import ArtifactError

MODEL_FILE = "modelyard-model.json"
"""The metadata file every saved model folder carries (written by ``modelyard.flavors``)."""


_MAX_FLAVOR = 64


@dataclass(frozen=True)
class FolderMeta:
    """What the registry keeps from a model folder's ``modelyard-model.json``."""

    flavor: str
    signature: dict[str, Any] | None
    requirements: dict[str, str] | None
    raw: dict[str, Any]


def parse_model_meta(data: bytes, where: str) -> FolderMeta:
    """Check the metadata file's shape; the registry stores these fields as they are."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ArtifactError(f"{where}: {MODEL_FILE} is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ArtifactError(f"{where}: {MODEL_FILE} must hold a JSON object")
    flavor = doc.get("flavor")
    if not isinstance(flavor, str) or not flavor or len(flavor) > _MAX_FLAVOR:
        raise ArtifactError(f"{where}: {MODEL_FILE} has no valid 'flavor'")
    signature = doc.get("signature")
    if signature is not None and not isinstance(signature, dict):
        raise ArtifactError(f"{where}: 'signature' in {MODEL_FILE} must be an object")
    requirements = doc.get("requirements")
    if requirements is not None and not (
        isinstance(requirements, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in requirements.items())
    ):
        raise ArtifactError(
            f"{where}: 'requirements' in {MODEL_FILE} must map package names to versions"
        )
    return FolderMeta(flavor, signature, requirements, doc)


@dataclass(frozen=True)
class LoggedModel:
    """A model folder stored as an artifact of a run, ready to be registered."""

    run_id: str
    artifact: str  # the run artifact's name ("model")
    digest: str  # manifest digest of the folder
    flavor: str
    signature: dict[str, Any] | None
    requirements: dict[str, str] | None
