"""The ``model_version`` node type for :mod:`modelyard.tracking.lineage` (ids ``churn@2``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard.errors import NotFound, UsageError

if TYPE_CHECKING:
    from modelyard.tracking.lineage import NodeType
    from modelyard.workspace import Workspace


def _label(ws: Workspace, node_id: str) -> str:
    from modelyard.hashing import short

    name, _, number = node_id.partition("@")
    try:
        version = ws.store.models.get_version(name, int(number))
    except (NotFound, ValueError):
        return f"model {node_id} (missing)"
    aliases = f" ({', '.join(version.aliases)})" if version.aliases else ""
    archived = " [archived]" if version.status != "active" else ""
    return f"model {version.ref}{aliases} {version.flavor} {short(version.digest)}{archived}"


def _resolve(ws: Workspace, text: str) -> str | None:
    """``churn@2``, ``churn@production``, ``churn@latest``, ``churn@sha256:…``; anything that
    does not name a registered version is left to the other node types."""
    from modelyard.models.resolve import resolve

    try:
        return resolve(text.strip(), ws).ref
    except (NotFound, UsageError):
        return None


def model_version_node() -> NodeType:
    from modelyard.tracking.lineage import NodeType

    return NodeType("model_version", "model version", _label, _resolve)
