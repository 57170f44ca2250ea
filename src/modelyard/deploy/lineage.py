"""The ``deployment`` node type for lineage (id: the deployment name)."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelyard.tracking.lineage import NodeType
    from modelyard.workspace import Workspace


def _label(ws: Workspace, node_id: str) -> str:
    dep = ws.store.deployments.find(node_id)
    if dep is None:
        return f"deployment {node_id} (removed)"
    current = dep.current.model_ref if dep.current else "-"
    return f"deployment {dep.name} ({dep.target}, {dep.status}, serving {current})"


def _resolve(ws: Workspace, text: str) -> str | None:
    name = text.strip()
    return name if ws.store.deployments.find(name) is not None else None


def deployment_node() -> NodeType:
    from modelyard.tracking.lineage import NodeType

    return NodeType("deployment", "deployment", _label, _resolve)
