"""Type-aware storage of the values that pass between steps.

Each value goes to the content-addressed artifact store in a format chosen by its type, so a
value is as portable and inspectable as it can be and nothing is unpickled by surprise:

=================================  ===========  =============================================
value                              serializer   stored as
=================================  ===========  =============================================
``DatasetVersion``                 dataset      JSON ``{"ref", "digest"}``; re-read from store
``pandas.DataFrame``               parquet      Parquet (pyarrow)
``numpy.ndarray``                  npy          ``.npy`` (loaded with ``allow_pickle=False``)
scikit-learn estimator             skops        skops (no pickle), trusted types fixed below
``pathlib.Path`` to a file         file         the file's bytes, handed back as a file path
``pathlib.Path`` to a folder       dir          a manifest of its files, handed back as a folder
None/bool/int/float/str/list/dict  json         JSON
anything else, if ``pickle=True``  pickle       pickle (only for steps that declare it)
=================================  ===========  =============================================

The serializer's name is recorded by the orchestrator next to the digest; it is never guessed
from the bytes, so a blob cannot ask to be unpickled.
"""

from __future__ import annotations

import io
import json
import math
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import ArtifactError, StepFailed

if TYPE_CHECKING:
    from modelyard.artifacts.base import ArtifactStore

SERIALIZERS = ("dataset", "parquet", "npy", "skops", "file", "dir", "json", "pickle")


@dataclass(frozen=True)
class StoredValue:
    digest: str
    serializer: str

    def to_json(self) -> dict[str, str]:
        return {"digest": self.digest, "serializer": self.serializer}

    @classmethod
    def from_json(cls, doc: Any) -> StoredValue:
        if not isinstance(doc, dict) or doc.get("serializer") not in SERIALIZERS:
            raise ArtifactError(f"not a stored step value: {doc!r}")
        return cls(str(doc["digest"]), str(doc["serializer"]))


def choose(value: Any, *, allow_pickle: bool) -> str | None:
    """The serializer for ``value`` or None when no safe one fits (and pickle is not allowed)."""
    if _is_instance(value, "modelyard.store.data_entities", "DatasetVersion"):
        return "dataset"
    if _is_instance(value, "pandas", "DataFrame"):
        return "parquet"
    if _is_instance(value, "numpy", "ndarray"):
        return "npy" if value.dtype != object else ("pickle" if allow_pickle else None)
    if _is_sklearn_estimator(value):
        return "skops"
    if isinstance(value, Path):
        if value.is_file():
            return "file"
        if value.is_dir():
            return "dir"
        return None
    if _is_json(value):
        return "json"
    return "pickle" if allow_pickle else None


def dump(
    value: Any, *, step: str, output: str, artifacts: ArtifactStore, allow_pickle: bool
) -> StoredValue:
    """Store one output; an unsupported type fails with the step, the output and the type."""
    kind = choose(value, allow_pickle=allow_pickle)
    if kind is None:
        type_name = f"{type(value).__module__}.{type(value).__qualname__}"
        if isinstance(value, Path):
            reason = f"path {value} does not exist"
        else:
            reason = (
                f"no safe serializer for type {type_name} (supported: DataFrame, ndarray, "
                "scikit-learn estimators, Path, DatasetVersion, JSON values); declare "
                "@step(pickle=True) to pickle values you trust"
            )
        raise StepFailed(f"step {step!r} output {output!r}: cannot store it: {reason}")
    try:
        digest = _WRITERS[kind](value, artifacts)
    except StepFailed:
        raise
    except Exception as exc:
        raise StepFailed(
            f"step {step!r} output {output!r}: cannot store a value of type "
            f"{type(value).__module__}.{type(value).__qualname__} as {kind}: {exc}"
        ) from exc
    return StoredValue(digest, kind)


def load(
    stored: StoredValue,
    *,
    artifacts: ArtifactStore,
    scratch: Path,
    resolve_dataset: Callable[[str], Any],
) -> Any:
    """Read one stored value back. ``scratch`` receives files and folders; ``resolve_dataset``
    turns ``name@N`` into a :class:`DatasetVersion` (it needs the metadata store)."""
    kind = stored.serializer
    if kind == "file":
        scratch.mkdir(parents=True, exist_ok=True)
        dest = scratch / stored.digest.split(":", 1)[1][:16]
        artifacts.export_file(stored.digest, dest)
        return dest
    if kind == "dir":
        dest = scratch / stored.digest.split(":", 1)[1][:16]
        artifacts.export_dir(stored.digest, dest)
        return dest
    data = artifacts.get_bytes(stored.digest)
    if kind == "json":
        return json.loads(data)
    if kind == "dataset":
        return resolve_dataset(str(json.loads(data)["ref"]))
    if kind == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(io.BytesIO(data)).to_pandas()
    if kind == "npy":
        import numpy as np

        return np.load(io.BytesIO(data), allow_pickle=False)
    if kind == "skops":
        from modelyard.flavors.sklearn import loads

        return loads(data, label=f"step value {stored.digest}")
    if kind == "pickle":
        import pickle

        # Only reached for values whose producing step declared pickle=True; the name comes
        # from the store, never from the blob.
        return pickle.loads(data)
    raise ArtifactError(f"unknown serializer {kind!r} for {stored.digest}")


# -- writers ----------------------------------------------------------------------------------
def _write_json(value: Any, artifacts: ArtifactStore) -> str:
    data = json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return artifacts.put_bytes(data.encode())


def _write_dataset(value: Any, artifacts: ArtifactStore) -> str:
    return _write_json({"ref": value.ref, "digest": value.digest}, artifacts)


def _write_parquet(value: Any, artifacts: ArtifactStore) -> str:
    import pyarrow as pa
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    # No write timestamps or created_by drift: identical frames give identical digests.
    pq.write_table(pa.Table.from_pandas(value), buf, compression="zstd")
    return artifacts.put_bytes(buf.getvalue())


def _write_npy(value: Any, artifacts: ArtifactStore) -> str:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, value, allow_pickle=False)
    return artifacts.put_bytes(buf.getvalue())


def _write_skops(value: Any, artifacts: ArtifactStore) -> str:
    import skops.io as sio

    from modelyard.flavors.sklearn import canonical_skops

    return artifacts.put_bytes(canonical_skops(sio.dumps(value)))


def _write_file(value: Any, artifacts: ArtifactStore) -> str:
    return artifacts.put_file(Path(value))


def _write_dir(value: Any, artifacts: ArtifactStore) -> str:
    return artifacts.put_dir(Path(value))[0]


def _write_pickle(value: Any, artifacts: ArtifactStore) -> str:
    import pickle

    return artifacts.put_bytes(pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL))


_WRITERS: dict[str, Callable[[Any, ArtifactStore], str]] = {
    "dataset": _write_dataset,
    "parquet": _write_parquet,
    "npy": _write_npy,
    "skops": _write_skops,
    "file": _write_file,
    "dir": _write_dir,
    "json": _write_json,
    "pickle": _write_pickle,
}


def _is_instance(value: Any, module: str, cls: str) -> bool:
    """isinstance without importing ``module``: if it is not loaded, value cannot be one."""
    mod = sys.modules.get(module)
    return mod is not None and isinstance(value, getattr(mod, cls))


def _is_sklearn_estimator(value: Any) -> bool:
    base = sys.modules.get("sklearn.base")
    return base is not None and isinstance(value, base.BaseEstimator)


def _is_json(value: Any, depth: int = 0) -> bool:
    if depth > 64:
        return False
    if value is None or isinstance(value, bool | int | str):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list | tuple):
        return all(_is_json(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v, depth + 1) for k, v in value.items())
    return False
