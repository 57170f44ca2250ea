"""``churn@3``, ``churn@production``, ``churn@latest``, ``churn@sha256:…`` → a model version."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard.models._common import parse_model_ref

if TYPE_CHECKING:
    from modelyard.store.models_entities import ModelVersion
    from modelyard.workspace import Workspace


def resolve(ref: str, workspace: Workspace | None = None) -> ModelVersion:
    """The model version ``ref`` names. A bare name or ``@latest`` is the newest *active*
    version (archived versions are only reached by number, alias or digest)."""
    from modelyard.workspace import resolve as resolve_workspace

    parsed = parse_model_ref(ref)
    ws = resolve_workspace(workspace)
    return ws.store.models.get_version(
        parsed.name, parsed.version, digest=parsed.digest, alias=parsed.alias
    )
