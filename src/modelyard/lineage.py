"""Lineage across every stage: the node types modelyard knows, and the tree around one thing.

The walk and the node-type registry are :mod:`modelyard.tracking.lineage`; each stage describes
its own node type in its ``lineage.py``. This module sits above the stages and is the one
explicit list of them, in resolution order, so that tracking (which every stage uses) imports
none of the stages. Nothing registers at import time: each call builds a fresh registry, and a
caller can pass its own (``default_node_types()`` plus ``register``) to :func:`build_lineage`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard.tracking.lineage import BOTH, NodeTypes, walk_lineage

if TYPE_CHECKING:
    from modelyard.tracking.lineage import LineageNode
    from modelyard.workspace import Workspace

__all__ = ["build_lineage", "default_node_types"]


def default_node_types() -> NodeTypes:
    """The node types modelyard knows, in resolution order (each stage's imported here, when
    called)."""
    from modelyard.deploy.lineage import deployment_node
    from modelyard.models.lineage import model_version_node
    from modelyard.monitor.lineage import monitor_report_node, rollout_node, rollout_step_node
    from modelyard.packaging.lineage import image_node
    from modelyard.tracking.lineage import ARTIFACT_NODE, DATASET_VERSION_NODE, RUN_NODE

    return NodeTypes(
        [
            RUN_NODE,
            DATASET_VERSION_NODE,
            ARTIFACT_NODE,
            model_version_node(),
            monitor_report_node(),
            image_node(),
            deployment_node(),
            rollout_node(),
            rollout_step_node(),
        ]
    )


def build_lineage(
    workspace: Workspace,
    thing: str,
    *,
    direction: str = BOTH,
    depth: int = 10,
    node_types: NodeTypes | None = None,
) -> LineageNode:
    """The lineage tree around ``thing`` (a run id or prefix, ``dataset@3``, ``churn@2``, a
    digest…), over :func:`default_node_types` unless ``node_types`` is given (see
    :func:`modelyard.tracking.lineage.walk_lineage`)."""
    types = node_types if node_types is not None else default_node_types()
    return walk_lineage(workspace, thing, types, direction=direction, depth=depth)
