"""Tracked runs and lineage: what ran, with which code, environment and data, and what it made."""

from modelyard.tracking.environment import (
    CodeVersion,
    Environment,
    capture_code_version,
    current_environment,
    load_environment,
    save_environment,
)
from modelyard.tracking.lineage import (
    LineageNode,
    NodeType,
    NodeTypes,
    register_node_type,
    walk_lineage,
)
from modelyard.tracking.query import (
    Comparison,
    RunDetails,
    RunSummary,
    compare_runs,
    get_run,
    list_runs,
)
from modelyard.tracking.run import ActiveRun, resolve_dataset_version, start_run
from modelyard.tracking.settings import TrackingSettings

__all__ = [
    "ActiveRun",
    "CodeVersion",
    "Comparison",
    "Environment",
    "LineageNode",
    "NodeType",
    "NodeTypes",
    "RunDetails",
    "RunSummary",
    "TrackingSettings",
    "capture_code_version",
    "compare_runs",
    "current_environment",
    "get_run",
    "list_runs",
    "load_environment",
    "register_node_type",
    "resolve_dataset_version",
    "save_environment",
    "start_run",
    "walk_lineage",
]
