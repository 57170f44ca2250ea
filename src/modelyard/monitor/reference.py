"""The reference a window is compared with: the training dataset's profile and sample.

A model version's reference is the dataset version nearest upstream of the run that produced it
in the lineage (``dataset_version -input-> run``, following ``artifact``/``run`` arrows back
through a pipeline), so drift is always measured against what the model actually learnt from.
Numeric features keep the profile's exact min/max/std/missing share (over the whole dataset) and
the ≤10k-row reservoir sample as the distribution the tests compare with; categorical features
keep the profile's category counts (exact unless the profile pruned rare values) plus the
sample's categories, so a category is "new" only if neither saw it.
"""

from __future__ import annotations

import functools
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelyard.errors import DataError, NotFound

if TYPE_CHECKING:
    import numpy as np

    from modelyard.store import DatasetVersion
    from modelyard.workspace import Workspace

NUMERIC = "numeric"
CATEGORICAL = "categorical"
SAMPLE_ROWS = 10_000
PSI_BINS = 10


@dataclass(frozen=True)
class FeatureReference:
    """One feature of the reference. ``values`` is the numeric sample (finite values only);
    ``counts`` the category counts (categories as strings)."""

    name: str
    kind: str  # NUMERIC | CATEGORICAL
    missing_share: float = 0.0
    min: float | None = None
    max: float | None = None
    std: float | None = None
    values: Any = None  # np.ndarray of float64 for numeric features
    counts: Mapping[str, int] = field(default_factory=dict)

    @functools.cached_property
    def psi_edges(self) -> Any:
        """Inner edges of the reference's decile bins, and the reference counts in them —
        cached, since every window is binned on the same edges."""
        import numpy as np

        values = self.values if self.values is not None else np.empty(0)
        if not len(values):
            return np.empty(0), np.zeros(1, dtype=np.int64)
        inner = np.unique(np.quantile(values, np.linspace(0, 1, PSI_BINS + 1))[1:-1])
        counts = np.bincount(np.searchsorted(inner, values, side="right"), minlength=len(inner) + 1)
        return inner, counts

    @functools.cached_property
    def ecdf_counts(self) -> tuple[Any, Any]:
        """For each (sorted) sample value: how many sample values are ``<=`` it and ``<`` it
        — the reference CDF at its own steps, from the right and from the left."""
        import numpy as np

        values = self.values if self.values is not None else np.empty(0)
        return (
            np.searchsorted(values, values, side="right"),
            np.searchsorted(values, values, side="left"),
        )

    @functools.cached_property
    def scale(self) -> float:
        """What a Wasserstein distance is divided by: the std, else the IQR, else 1."""
        import numpy as np

        if self.std:
            return float(self.std)
        if self.values is not None and len(self.values):
            q1, q3 = np.quantile(self.values, [0.25, 0.75])
            if q3 > q1:
                return float(q3 - q1)
        return 1.0


@dataclass(frozen=True)
class Reference:
    """The features a window is judged against, and where they came from (``source``: a
    dataset reference such as ``churn@3``, or a caller's label)."""

    source: str
    features: tuple[FeatureReference, ...]

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    def feature(self, name: str) -> FeatureReference:
        for f in self.features:
            if f.name == name:
                return f
        raise NotFound(f"reference {self.source} has no feature {name!r}")

    @classmethod
    def from_columns(
        cls,
        columns: Mapping[str, Any],
        *,
        source: str = "frame",
        sample_rows: int | None = SAMPLE_ROWS,
        seed: int = 0,
    ) -> Reference:
        """A reference from in-memory columns (arrays, lists, Series). Numeric columns keep a
        uniform sample of ``sample_rows`` values (None: all) — the same budget a dataset
        profile keeps — while min/max/std/missing/category counts use every value."""
        import numpy as np

        rng = np.random.default_rng(seed)
        features = []
        for name, raw in columns.items():
            arr = np.asarray(raw)
            if arr.dtype.kind in "biuf":
                values = arr.astype(np.float64, copy=False)
                present = values[~np.isnan(values)]
                finite = present[np.isfinite(present)]
                missing = 1.0 - len(present) / len(values) if len(values) else 0.0
                sample = finite
                if sample_rows is not None and len(finite) > sample_rows:
                    sample = rng.choice(finite, sample_rows, replace=False)
                sample = np.sort(sample)  # sorted: quantiles by index, cheaper tests
                features.append(
                    FeatureReference(
                        name=str(name),
                        kind=NUMERIC,
                        missing_share=missing,
                        min=float(finite.min()) if len(finite) else None,
                        max=float(finite.max()) if len(finite) else None,
                        std=float(finite.std(ddof=1)) if len(finite) > 1 else None,
                        values=sample,
                    )
                )
            else:
                strings, missing = categorical_values(arr)
                cats, counts = np.unique(strings, return_counts=True)
                features.append(
                    FeatureReference(
                        name=str(name),
                        kind=CATEGORICAL,
                        missing_share=missing,
                        counts={str(c): int(n) for c, n in zip(cats, counts, strict=True)},
                    )
                )
        return cls(source, tuple(features))

    @classmethod
    def from_profile(
        cls,
        profile: Mapping[str, Any],
        sample: Any,
        *,
        source: str,
        features: Sequence[str] | None = None,
    ) -> Reference:
        """A reference from a dataset profile (format v1) and its sample (a ``pyarrow.Table``).
        ``features`` keeps those columns, in that order (default: every numeric, string and
        boolean column)."""
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        if profile.get("profile_version") != 1 or profile.get("mode") != "table":
            raise DataError(f"{source}: not a table profile (version 1); cannot monitor drift")
        docs = {c["name"]: c for c in profile["columns"]}
        wanted = list(features) if features is not None else list(docs)
        missing = [n for n in wanted if n not in docs]
        if missing:
            raise DataError(f"{source} has no column(s) {', '.join(map(repr, missing))}")
        out = []
        for name in wanted:
            doc = docs[name]
            kind = doc["logical_type"]
            column = sample.column(name).combine_chunks() if name in sample.column_names else None
            if column is not None and pa.types.is_dictionary(column.type):
                column = column.dictionary_decode()
            if kind in ("integer", "float"):
                values = np.empty(0)
                if column is not None:
                    values = pc.drop_null(column).cast(pa.float64()).to_numpy(zero_copy_only=False)
                    values = np.sort(values[np.isfinite(values)])
                out.append(
                    FeatureReference(
                        name=name,
                        kind=NUMERIC,
                        missing_share=float(doc.get("missing_share") or 0.0),
                        min=_float(doc.get("min")),
                        max=_float(doc.get("max")),
                        std=_float(doc.get("std")),
                        values=values,
                    )
                )
            elif kind in ("string", "boolean"):
                counts: dict[str, int] = {
                    _category(t["value"]): int(t["count"]) for t in doc.get("top") or []
                }
                if column is not None:  # rare categories the top list cut off: known, count ~0
                    for value in pc.unique(pc.drop_null(column)).to_pylist():
                        counts.setdefault(_category(value), 0)
                out.append(
                    FeatureReference(
                        name=name,
                        kind=CATEGORICAL,
                        missing_share=float(doc.get("missing_share") or 0.0),
                        counts=counts,
                    )
                )
            elif features is not None:
                raise DataError(
                    f"{source}: column {name!r} is {kind}; drift covers numbers and categories only"
                )
        return cls(source, tuple(out))


def _float(value: Any) -> float | None:
    return None if value is None else float(value)


def _category(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def categorical_values(arr: Any) -> tuple[np.ndarray, float]:
    """Present values of a categorical column as strings, and the missing share."""
    import numpy as np

    arr = np.asarray(arr, dtype=object)
    if not len(arr):
        return np.empty(0, dtype=str), 0.0
    present = np.array(
        [v is not None and not (isinstance(v, float) and v != v) for v in arr], dtype=bool
    )
    strings = np.array([_category(v) for v in arr[present]], dtype=str)
    return strings, 1.0 - present.sum() / len(arr)


def training_dataset(workspace: Workspace, model_ref: str) -> DatasetVersion:
    """The dataset version nearest upstream of the run that produced ``model_ref``."""
    from modelyard.models import resolve

    version = resolve(model_ref, workspace)
    if version.run_id is None:
        raise NotFound(f"model {version.ref} was not logged from a run: no training data known")
    lineage = workspace.store.lineage
    queue: deque[tuple[str, str]] = deque([("run", version.run_id)])
    seen = set(queue)
    while queue:
        node = queue.popleft()
        edges = lineage.edges_to(*node)
        for edge in edges:
            if edge.source_type == "dataset_version":
                name, _, number = edge.source_id.rpartition("@")
                return workspace.store.datasets.get_version(name, int(number))
        for edge in edges:
            up = (edge.source_type, edge.source_id)
            if up not in seen and edge.source_type in ("run", "artifact"):
                seen.add(up)
                queue.append(up)
        if node[0] == "run":  # a pipeline step: its siblings' inputs are upstream too
            for edge in edges:
                if edge.relation == "contains" and edge.source_type == "run":
                    for sib in lineage.edges_from("run", edge.source_id):
                        key = (sib.target_type, sib.target_id)
                        if sib.target_type == "run" and key not in seen:
                            seen.add(key)
                            queue.append(key)
    raise NotFound(
        f"no dataset version upstream of model {version.ref} in the lineage; record it with "
        "run.use_dataset(...) or pass a dataset reference explicitly"
    )


def load_reference(
    model_ref: str | None = None,
    *,
    dataset: str | None = None,
    features: Sequence[str] | None = None,
    workspace: Workspace | None = None,
) -> Reference:
    """The reference for a model version (its training dataset, found through the lineage) or
    for an explicit ``dataset`` reference. Features default to the model signature's input
    columns (so the label column of the training data is left out), else every column."""
    import io

    import pyarrow.parquet as pq

    from modelyard.data.resolve import resolve as resolve_dataset
    from modelyard.data.resolve import using_workspace

    if model_ref is None and dataset is None:
        raise NotFound("give a model version or a dataset to take the reference from")
    with using_workspace(workspace) as ws:
        if dataset is not None:
            version = resolve_dataset(dataset, ws)
        else:
            assert model_ref is not None
            version = training_dataset(ws, model_ref)
        if features is None and model_ref is not None:
            from modelyard.models import resolve

            sig = resolve(model_ref, ws).signature or {}
            if sig.get("kind") == "columns" and sig.get("inputs"):
                features = [str(c["name"]) for c in sig["inputs"]]
        profile = version.profile
        if not profile or not profile.get("sample_digest"):
            raise DataError(f"dataset {version.ref} has no table profile to compare with")
        sample = pq.read_table(io.BytesIO(ws.artifacts.get_bytes(profile["sample_digest"])))
        return Reference.from_profile(profile, sample, source=version.ref, features=features)
