"""Reading and curating the registry: list, show, versions, archive, describe, tag, trust."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard.models._common import MODEL_ACTIVE, MODEL_ARCHIVED, actor, parse_version_ref
from modelyard.models.register import check_tags
from modelyard.refs import validate_name

if TYPE_CHECKING:
    from modelyard.store.models_entities import ModelVersion, RegisteredModel
    from modelyard.workspace import Workspace


def _ws(workspace: Workspace | None) -> Workspace:
    from modelyard.workspace import resolve

    return resolve(workspace)


def list_models(workspace: Workspace | None = None) -> list[RegisteredModel]:
    return _ws(workspace).store.models.all()


def get_model(name: str, workspace: Workspace | None = None) -> RegisteredModel:
    return _ws(workspace).store.models.get(validate_name(name, "model name"))


def list_versions(name: str, workspace: Workspace | None = None) -> list[ModelVersion]:
    return _ws(workspace).store.models.versions(validate_name(name, "model name"))


def archive(ref: str, workspace: Workspace | None = None) -> ModelVersion:
    """Archive ``name@N``: it stays resolvable by number, alias and digest but is no longer
    ``latest``."""
    name, version = parse_version_ref(ref)
    return _ws(workspace).store.models.set_status(name, version, MODEL_ARCHIVED)


def unarchive(ref: str, workspace: Workspace | None = None) -> ModelVersion:
    name, version = parse_version_ref(ref)
    return _ws(workspace).store.models.set_status(name, version, MODEL_ACTIVE)


def describe(ref: str, description: str | None, workspace: Workspace | None = None) -> None:
    """Describe ``name@N``, or the model itself for a bare ``name``."""
    from modelyard.models._common import parse_model_ref

    parsed = parse_model_ref(ref)
    ws = _ws(workspace)
    if "@" not in ref:
        ws.store.models.set_description(parsed.name, None, description)
        return
    name, version = parse_version_ref(ref)
    ws.store.models.set_description(name, version, description)


def set_tags(ref: str, tags: dict[str, str], workspace: Workspace | None = None) -> ModelVersion:
    name, version = parse_version_ref(ref)
    ws = _ws(workspace)
    ws.store.models.set_tags(name, version, check_tags(tags))
    return ws.store.models.get_version(name, version)


def remove_tags(ref: str, keys: list[str], workspace: Workspace | None = None) -> ModelVersion:
    name, version = parse_version_ref(ref)
    ws = _ws(workspace)
    ws.store.models.remove_tags(name, version, keys)
    return ws.store.models.get_version(name, version)


def trust_pickle(ref: str, trusted: bool = True, workspace: Workspace | None = None) -> None:
    """Mark ``name@N`` as one whose pickled parts may be loaded (recorded with who did it)."""
    name, version = parse_version_ref(ref)
    _ws(workspace).store.models.set_trusted(name, version, trusted, actor())
