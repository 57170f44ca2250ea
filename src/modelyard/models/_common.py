"""Small helpers shared by the registry verbs: who is acting, and how a model folder's
metadata file is read without importing any flavor library."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from modelyard.errors import ArtifactError
from modelyard.refs import Ref

MODEL_FILE = "modelyard-model.json"
MODEL_ACTIVE = "active"  # the same values as modelyard.store.models_entities, kept here
MODEL_ARCHIVED = "archived"  # so importing the verbs does not import the store
"""The metadata file every saved model folder carries (written by ``modelyard.flavors``)."""

_MAX_FLAVOR = 64


def actor() -> str:
    """``user@host`` of whoever runs this process: recorded on every registry change."""
    from modelyard.tracking.environment import host_name, user_name

    return f"{user_name() or 'unknown'}@{host_name() or 'unknown'}"


def parse_model_ref(text: str) -> Ref:
    return Ref.parse(text, kind="model reference")


def parse_version_ref(text: str) -> tuple[str, int]:
    """``name@N`` only: commands that change one version take an exact number, so a moving
    alias can never make them change a different version than the user saw."""
    ref = parse_model_ref(text)
    if ref.version is None:
        from modelyard.errors import InvalidReference

        raise InvalidReference(f"{text!r} must name one version as NAME@NUMBER (e.g. {ref.name}@3)")
    return ref.name, ref.version


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
