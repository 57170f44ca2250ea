"""What trained a version: the runs upstream of its run, their parameters and metrics, and the
dataset versions they read.

A model logged by a plain run has it all on that run. A model made by a pipeline does not: the
step that logged it read artifacts other steps wrote, and only the first step read the dataset.
So this walks the lineage graph upstream from the version's run — run ← artifact ← run … — and
stops at dataset versions (what made a dataset is its own story). The nearest value wins when
two runs name the same parameter or metric.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modelyard.errors import NotFound

if TYPE_CHECKING:
    from modelyard.store.models_entities import ModelVersion
    from modelyard.workspace import Workspace

# A bound on the walk: a pipeline has a handful of steps, but one artifact digest can be the
# output of many historical runs (an unchanged metrics file), and none of those should cost.
MAX_NODES = 200


@dataclass(frozen=True)
class Provenance:
    """``runs`` starts with the version's own run, then upstream runs nearest first."""

    runs: tuple[str, ...] = ()
    params: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    datasets: dict[str, str] = field(default_factory=dict)  # dataset name -> its version ref


def provenance(ws: Workspace, version: ModelVersion) -> Provenance:
    if version.run_id is None:
        return Provenance()
    return run_provenance(ws, version.run_id)


def run_provenance(ws: Workspace, run_id: str) -> Provenance:
    runs, datasets = _walk_up(ws, run_id)
    params: dict[str, str] = {}
    metrics: dict[str, float] = {}
    found: list[str] = []
    for rid in runs:
        try:
            run = ws.store.runs.get(rid)
        except NotFound:
            continue
        found.append(rid)
        for key, value in run.params.items():
            params.setdefault(key, value)
        for key, number in run.latest_metrics.items():
            metrics.setdefault(key, number)
    named: dict[str, str] = {}
    for ref in datasets:
        named.setdefault(ref.partition("@")[0], ref)
    return Provenance(tuple(found), params, metrics, named)


def _walk_up(ws: Workspace, run_id: str) -> tuple[list[str], list[str]]:
    """Runs (breadth first from ``run_id``) and the dataset versions they read."""
    runs: list[str] = []
    datasets: list[str] = []
    seen = {("run", run_id)}
    queue = deque([("run", run_id)])
    while queue and len(seen) < MAX_NODES:
        node_type, node_id = queue.popleft()
        if node_type == "run":
            runs.append(node_id)
        for edge in ws.store.lineage.edges_to(node_type, node_id):
            if edge.relation == "contains":  # a pipeline holding its steps is not an input
                continue
            source = (edge.source_type, edge.source_id)
            if source in seen:
                continue
            seen.add(source)
            if edge.source_type == "dataset_version":
                datasets.append(edge.source_id)
            elif edge.source_type in ("run", "artifact"):
                queue.append(source)
    return runs, datasets
