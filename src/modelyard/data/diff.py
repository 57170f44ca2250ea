"""``diff``: what changed between two dataset versions — files, schema, and profile shifts.

Shifts compare B to A with A as the reference: a mean moving by more than a fraction of A's
standard deviation, a change in the share of missing values, and categories entering or leaving
the top-categories list. These are quick signals for a human; rigorous drift tests (KS, PSI)
belong to the monitor stage and use the stored samples.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelyard.refs import Ref

if TYPE_CHECKING:
    from modelyard.artifacts import Manifest
    from modelyard.store import DatasetVersion
    from modelyard.workspace import Workspace


@dataclass(frozen=True)
class TypeChange:
    column: str
    old: str
    new: str


@dataclass(frozen=True)
class ColumnShift:
    """How one column present in both versions moved. ``mean_shift_std`` is
    ``(mean_b - mean_a) / std_a`` (None when A's std is 0 or unknown)."""

    column: str
    logical_type: str
    mean_a: float | None
    mean_b: float | None
    mean_shift_std: float | None
    missing_share_a: float
    missing_share_b: float
    new_categories: tuple[Any, ...]
    vanished_categories: tuple[Any, ...]

    @property
    def missing_share_change(self) -> float:
        return self.missing_share_b - self.missing_share_a


@dataclass(frozen=True)
class DatasetDiff:
    a: DatasetVersion
    b: DatasetVersion
    files_added: tuple[str, ...]
    files_removed: tuple[str, ...]
    files_changed: tuple[str, ...]
    columns_added: tuple[str, ...]
    columns_removed: tuple[str, ...]
    type_changes: tuple[TypeChange, ...]
    shifts: tuple[ColumnShift, ...]
    row_count_a: int | None
    row_count_b: int | None

    @property
    def identical(self) -> bool:
        return self.a.digest == self.b.digest


def _manifest(version: DatasetVersion, workspace: Workspace) -> Manifest:
    from modelyard.artifacts import Manifest, ManifestEntry
    from modelyard.data.checkout import file_name

    if version.kind == "directory":
        return workspace.artifacts.read_manifest(version.digest)
    entry = ManifestEntry(file_name(version), version.digest, version.size, 0o644)
    return Manifest((entry,))


def _tables(version: DatasetVersion) -> dict[str, tuple[dict[str, Any], dict[str, Any]]]:
    """prefix → (schema, profile) of each table in a version: one for a file or a folder of
    same-schema files, one per file otherwise."""
    schema, profile = version.schema or {}, version.profile or {}
    if profile.get("mode") == "table":
        return {"": (schema, profile)}
    if profile.get("mode") == "per_file":
        files = schema.get("files", {})
        return {f"{path}:": (files.get(path, {}), prof) for path, prof in profile["files"].items()}
    return {}


def _shift(name: str, ca: dict[str, Any], cb: dict[str, Any]) -> ColumnShift:
    mean_a, mean_b, std_a = ca.get("mean"), cb.get("mean"), ca.get("std")
    shift = None
    if mean_a is not None and mean_b is not None and std_a:
        shift = (mean_b - mean_a) / std_a
    top_a = [t["value"] for t in ca.get("top") or []]
    top_b = [t["value"] for t in cb.get("top") or []]
    return ColumnShift(
        column=name,
        logical_type=cb.get("logical_type", ""),
        mean_a=mean_a,
        mean_b=mean_b,
        mean_shift_std=shift,
        missing_share_a=float(ca.get("missing_share", 0.0)),
        missing_share_b=float(cb.get("missing_share", 0.0)),
        new_categories=tuple(v for v in top_b if v not in set(top_a)),
        vanished_categories=tuple(v for v in top_a if v not in set(top_b)),
    )


def diff(a: str | Ref, b: str | Ref, workspace: Workspace | None = None) -> DatasetDiff:
    """Compare version ``a`` (the reference) with version ``b``; they may be versions of
    different datasets."""
    from modelyard.data.resolve import resolve, using_workspace

    with using_workspace(workspace) as ws:
        va, vb = resolve(a, ws), resolve(b, ws)
        added, removed, changed = _manifest(va, ws).diff(_manifest(vb, ws))
    tables_a, tables_b = _tables(va), _tables(vb)
    cols_added: list[str] = []
    cols_removed: list[str] = []
    type_changes: list[TypeChange] = []
    shifts: list[ColumnShift] = []
    for prefix in [p for p in tables_a if p in tables_b]:
        (_, pa_), (_, pb_) = tables_a[prefix], tables_b[prefix]
        ca = {c["name"]: c for c in pa_.get("columns", [])}
        cb = {c["name"]: c for c in pb_.get("columns", [])}
        cols_added += [prefix + n for n in cb if n not in ca]
        cols_removed += [prefix + n for n in ca if n not in cb]
        for n in [n for n in ca if n in cb]:
            if ca[n]["type"] != cb[n]["type"]:
                type_changes.append(TypeChange(prefix + n, ca[n]["type"], cb[n]["type"]))
            shifts.append(_shift(prefix + n, ca[n], cb[n]))
    return DatasetDiff(
        a=va,
        b=vb,
        files_added=tuple(added),
        files_removed=tuple(removed),
        files_changed=tuple(changed),
        columns_added=tuple(cols_added),
        columns_removed=tuple(cols_removed),
        type_changes=tuple(type_changes),
        shifts=tuple(shifts),
        row_count_a=(va.profile or {}).get("row_count"),
        row_count_b=(vb.profile or {}).get("row_count"),
    )
