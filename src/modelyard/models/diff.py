"""``diff``: what changed between two model versions, through their runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelyard.store.models_entities import ModelVersion
    from modelyard.workspace import Workspace

Change = tuple[Any, Any]  # (left, right); None where one side has no value


@dataclass(frozen=True)
class ModelDiff:
    left: ModelVersion
    right: ModelVersion
    params: dict[str, Change]
    metrics: dict[str, Change]
    signature: dict[str, Change]
    requirements: dict[str, Change]
    datasets: dict[str, Change]  # dataset name -> (left ref, right ref)
    fields: dict[str, Change]  # flavor, digest, run

    @property
    def identical(self) -> bool:
        return not any(
            (
                self.params,
                self.metrics,
                self.signature,
                self.requirements,
                self.datasets,
                self.fields,
            )
        )


def _changes(left: dict[str, Any], right: dict[str, Any]) -> dict[str, Change]:
    return {
        key: (left.get(key), right.get(key))
        for key in sorted(set(left) | set(right))
        if left.get(key) != right.get(key)
    }


def _run_parts(ws: Workspace, version: ModelVersion) -> tuple[dict[str, Any], ...]:
    """Parameters, metrics and datasets of the runs upstream of the version's run: for a
    pipeline-made version, the steps that prepared its data and trained it."""
    from modelyard.models.provenance import provenance

    found = provenance(ws, version)
    return dict(found.params), dict(found.metrics), dict(found.datasets)


def _signature_parts(signature: dict[str, Any] | None) -> dict[str, Any]:
    """Flatten a signature one level deep so a changed column shows as one line."""
    out: dict[str, Any] = {}
    for part, value in (signature or {}).items():
        if isinstance(value, list):
            for i, item in enumerate(value):
                label = item.get("name", i) if isinstance(item, dict) else i
                out[f"{part}.{label}"] = item
        else:
            out[part] = value
    return out


def diff(left_ref: str, right_ref: str, workspace: Workspace | None = None) -> ModelDiff:
    from modelyard.models.resolve import resolve
    from modelyard.workspace import resolve as resolve_workspace

    ws = resolve_workspace(workspace)
    left, right = resolve(left_ref, ws), resolve(right_ref, ws)
    lp, lm, ld = _run_parts(ws, left)
    rp, rm, rd = _run_parts(ws, right)
    return ModelDiff(
        left,
        right,
        params=_changes(lp, rp),
        metrics=_changes(lm, rm),
        signature=_changes(_signature_parts(left.signature), _signature_parts(right.signature)),
        requirements=_changes(left.requirements or {}, right.requirements or {}),
        datasets=_changes(ld, rd),
        fields=_changes(
            {"flavor": left.flavor, "digest": left.digest, "run": left.run_id},
            {"flavor": right.flavor, "digest": right.digest, "run": right.run_id},
        ),
    )
