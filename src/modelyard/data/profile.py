"""Streaming schema and statistical profile of tabular data: the reference drift checks use.

Memory stays flat whatever the file size: batches stream through per-column accumulators
(exact count, missing, min, max, mean and std by Chan's parallel merge of per-batch moments),
category counts are capped, and a seeded bottom-k reservoir keeps up to ``SAMPLE_ROWS`` raw rows.
Quantiles and histograms come from that sample, so they are exact whenever the table fits in it.

The profile format is stable (``"profile_version": 1``; keys may be added, never re-purposed)::

    {"profile_version": 1, "mode": "table", "row_count": int, "column_count": int,
     "files": [...],                                     # folders: the files profiled together
     "sample_digest": "sha256:…", "sample_rows": int, "sample_seed": int, "sample_exact": bool,
     "columns": [{
        "name", "type" (Arrow), "logical_type" (integer|float|boolean|string|datetime|binary|other),
        "count" (present values), "missing", "missing_share",
        integer/float: "min", "max", "mean", "std" (ddof=1, finite values), "infinite",
            "quantiles": {"probs": [0, .05, …, 1], "values": [...], "exact": bool},
            "histogram": {"edges": [...], "counts": [...], "exact": bool}  # counts over the sample
        boolean/string: "distinct", "distinct_exact", "top": [{"value", "count"}], "top_exact",
        boolean: "true_share";  string: "length": {"min", "max", "mean"}
        datetime: "min", "max" (ISO 8601)}]}

NaN counts as missing. ``distinct``/``top`` are exact until a column has more than
``MAX_TRACKED_CATEGORIES`` distinct values; past that, rare values are pruned, ``distinct`` is a
lower bound and top counts may be low (``*_exact`` false).
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from modelyard.data.formats import ByteProgress, TableSource, scan
from modelyard.errors import InvalidValue

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from modelyard.artifacts import ArtifactStore

PROFILE_VERSION = 1
SAMPLE_ROWS = 10_000
SAMPLE_SEED = 0
QUANTILE_PROBS = tuple(i / 20 for i in range(21))
HISTOGRAM_BINS = 20
TOP_CATEGORIES = 50
MAX_TRACKED_CATEGORIES = 10_000


def logical_type(t: pa.DataType) -> str:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        return logical_type(t.value_type)
    if pa.types.is_boolean(t):
        return "boolean"
    if pa.types.is_integer(t):
        return "integer"
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return "float"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_timestamp(t) or pa.types.is_date(t):
        return "datetime"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_fixed_size_binary(t):
        return "binary"
    return "other"


def schema_doc(schema: pa.Schema) -> list[dict[str, Any]]:
    return [
        {"name": f.name, "type": str(f.type), "logical_type": logical_type(f.type)} for f in schema
    ]


def _num(x: Any) -> float | None:
    """A JSON-safe float (stores reject NaN/inf in JSON columns)."""
    value = float(x)
    return value if math.isfinite(value) else None


def _plain(value: Any) -> Any:
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


class _Column:
    """Accumulates one column's statistics over batches."""

    def __init__(self, name: str, dtype: pa.DataType) -> None:
        self.name = name
        self.dtype = dtype
        self.logical = logical_type(dtype)
        self.count = 0
        self.missing = 0
        # numbers
        self.n = 0
        self.mean = 0.0
        self.m2 = 0.0
        self.infinite = 0
        self.min: Any = None
        self.max: Any = None
        # categories
        self.counts: dict[Any, int] = {}
        self.distinct_seen = 0
        self.pruned = False
        self.true = 0
        self.len_min: int | None = None
        self.len_max: int | None = None
        self.len_sum = 0

    def update(self, arr: pa.Array) -> None:
        import pyarrow as pa
        import pyarrow.compute as pc

        if isinstance(arr, pa.ChunkedArray):
            arr = arr.combine_chunks()
        if pa.types.is_dictionary(arr.type):
            arr = arr.dictionary_decode()
        nulls = arr.null_count
        self.missing += nulls
        present = arr.drop_null() if nulls else arr
        if self.logical in ("integer", "float"):
            self._update_numeric(present)
            return
        self.count += len(present)
        if not len(present):
            return
        if self.logical == "datetime":
            mm = pc.min_max(present)
            lo, hi = mm["min"].as_py(), mm["max"].as_py()
            self.min = lo if self.min is None else min(self.min, lo)
            self.max = hi if self.max is None else max(self.max, hi)
        elif self.logical in ("string", "boolean"):
            if self.logical == "string":
                lengths = pc.utf8_length(present)
                mm = pc.min_max(lengths)
                lo, hi = mm["min"].as_py(), mm["max"].as_py()
                self.len_min = lo if self.len_min is None else min(self.len_min, lo)
                self.len_max = hi if self.len_max is None else max(self.len_max, hi)
                self.len_sum += int(pc.sum(lengths).as_py() or 0)
            else:
                self.true += int(pc.sum(present.cast(pa.int64())).as_py() or 0)
            self._count_categories(present)

    def _update_numeric(self, present: pa.Array) -> None:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc

        values = float64_view(present.cast(pa.float64()))
        nan = int(np.isnan(values).sum())
        self.missing += nan
        self.count += len(values) - nan
        finite = values[np.isfinite(values)]
        self.infinite += len(values) - nan - len(finite)
        if not len(finite):
            return
        if self.logical == "integer":
            mm = pc.min_max(present)
            lo, hi = mm["min"].as_py(), mm["max"].as_py()
        else:
            lo, hi = float(finite.min()), float(finite.max())
        self.min = lo if self.min is None else min(self.min, lo)
        self.max = hi if self.max is None else max(self.max, hi)
        n_b = len(finite)
        mean_b = float(finite.mean())
        m2_b = float(((finite - mean_b) ** 2).sum())
        total = self.n + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / total
        self.m2 += m2_b + delta * delta * self.n * n_b / total
        self.n = total

    def _count_categories(self, present: pa.Array) -> None:
        import pyarrow.compute as pc

        vc = pc.value_counts(present)
        counts = self.counts
        for value, c in zip(
            vc.field("values").to_pylist(), vc.field("counts").to_pylist(), strict=True
        ):
            counts[value] = counts.get(value, 0) + c
        if len(counts) > 2 * MAX_TRACKED_CATEGORIES:
            self.distinct_seen = max(self.distinct_seen, len(counts))
            kept = sorted(counts.items(), key=lambda kv: -kv[1])[:MAX_TRACKED_CATEGORIES]
            self.counts = dict(kept)
            self.pruned = True

    def result(self, sample: np.ndarray | None, sample_exact: bool) -> dict[str, Any]:
        total = self.count + self.missing
        doc: dict[str, Any] = {
            "name": self.name,
            "type": str(self.dtype),
            "logical_type": self.logical,
            "count": self.count,
            "missing": self.missing,
            "missing_share": (self.missing / total) if total else 0.0,
        }
        if self.logical in ("integer", "float"):
            doc.update(self._numeric_result(sample, sample_exact))
        elif self.logical == "datetime":
            doc["min"], doc["max"] = _plain(self.min), _plain(self.max)
        elif self.logical in ("string", "boolean"):
            top = sorted(self.counts.items(), key=lambda kv: (-kv[1], str(kv[0])))
            doc["distinct"] = max(len(self.counts), self.distinct_seen)
            doc["distinct_exact"] = not self.pruned
            doc["top"] = [{"value": v, "count": c} for v, c in top[:TOP_CATEGORIES]]
            doc["top_exact"] = not self.pruned
            if self.logical == "boolean":
                doc["true_share"] = (self.true / self.count) if self.count else None
            else:
                doc["length"] = {
                    "min": self.len_min,
                    "max": self.len_max,
                    "mean": (self.len_sum / self.count) if self.count else None,
                }
        return doc

    def _numeric_result(self, sample: np.ndarray | None, exact: bool) -> dict[str, Any]:
        import numpy as np

        doc: dict[str, Any] = {
            "min": self.min,
            "max": self.max,
            "mean": _num(self.mean) if self.n else None,
            "std": _num(math.sqrt(self.m2 / (self.n - 1))) if self.n > 1 else None,
            "infinite": self.infinite,
            "quantiles": None,
            "histogram": None,
        }
        if sample is None or not len(sample) or self.min is None:
            return doc
        values = np.quantile(sample, QUANTILE_PROBS)
        doc["quantiles"] = {
            "probs": list(QUANTILE_PROBS),
            "values": [_num(v) for v in values],
            "exact": exact,
        }
        lo, hi = float(self.min), float(self.max)
        if lo == hi:
            edges = np.array([lo, hi])
            counts = np.array([len(sample)])
        else:
            edges = np.linspace(lo, hi, HISTOGRAM_BINS + 1)
            counts, _ = np.histogram(np.clip(sample, lo, hi), bins=edges)
        doc["histogram"] = {
            "edges": [_num(e) for e in edges],
            "counts": [int(c) for c in counts],
            "exact": exact,
        }
        return doc


class _Reservoir:
    """A seeded uniform sample without replacement: every row draws a random key and the
    ``size`` smallest keys win (bottom-k), which merges across batches and files and gives the
    same rows for the same data and seed. Candidates are buffered and compacted only when the
    buffer doubles, so a batch costs a vectorised comparison, not a copy of the sample."""

    def __init__(self, size: int, seed: int) -> None:
        import numpy as np

        self.size = size
        self.rng = np.random.default_rng(seed)
        self.keys: list[np.ndarray] = []
        self.rows: list[np.ndarray] = []
        self.parts: list[pa.Table] = []
        self.pending = 0
        self.threshold = 1.0
        self.offset = 0

    def add(self, batch: pa.RecordBatch) -> None:
        import numpy as np
        import pyarrow as pa

        n = batch.num_rows
        keys = self.rng.random(n)
        rows = np.arange(self.offset, self.offset + n, dtype=np.int64)
        self.offset += n
        picked = np.nonzero(keys < self.threshold)[0]
        if not len(picked):
            return
        part = pa.Table.from_batches([batch])
        if len(picked) < n:
            part = part.take(int64_indices(picked))
            keys, rows = keys[picked], rows[picked]
        self.parts.append(part)
        self.keys.append(keys)
        self.rows.append(rows)
        self.pending += len(picked)
        if self.pending > 2 * self.size:
            self._compact()

    def _compact(self) -> tuple[np.ndarray, np.ndarray, pa.Table | None]:
        import numpy as np
        import pyarrow as pa

        if not self.parts:
            return np.empty(0), np.empty(0, dtype=np.int64), None
        keys = np.concatenate(self.keys)
        rows = np.concatenate(self.rows)
        table = pa.concat_tables(self.parts)
        if len(keys) > self.size:
            keep = np.argpartition(keys, self.size - 1)[: self.size]
            table, keys, rows = table.take(int64_indices(keep)), keys[keep], rows[keep]
            self.threshold = float(keys.max())
        table = table.combine_chunks()
        self.parts, self.keys, self.rows, self.pending = [table], [keys], [rows], len(keys)
        return keys, rows, table

    def result(self, schema: pa.Schema) -> pa.Table:
        """The sampled rows in their original order (stable bytes for the same data)."""
        import numpy as np

        _, rows, table = self._compact()
        if table is None:
            return schema.empty_table()
        order = np.argsort(rows, kind="stable")
        return table.take(int64_indices(order))


class TableProfiler:
    """The state one :func:`formats.scan` pass fills in."""

    def __init__(self, sample_rows: int = SAMPLE_ROWS, seed: int = SAMPLE_SEED) -> None:
        self.rows = 0
        self.columns: list[_Column] | None = None
        self.reservoir = _Reservoir(sample_rows, seed)
        self.seed = seed

    def visit(self, batch: pa.RecordBatch) -> None:
        if self.columns is None:
            self.columns = [_Column(f.name, f.type) for f in batch.schema]
        self.rows += batch.num_rows
        for column, arr in zip(self.columns, batch.columns, strict=True):
            column.update(arr)
        self.reservoir.add(batch)

    def finish(self, schema: pa.Schema, artifacts: ArtifactStore) -> dict[str, Any]:
        import numpy as np
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq

        columns = self.columns or [_Column(f.name, f.type) for f in schema]
        sample = self.reservoir.result(schema)
        exact = self.rows <= self.reservoir.size
        buf = io.BytesIO()
        pq.write_table(sample, buf, compression="zstd")
        sample_digest = artifacts.put_bytes(buf.getvalue())
        docs = []
        for column in columns:
            values: np.ndarray | None = None
            if column.logical in ("integer", "float"):
                arr = sample.column(column.name).combine_chunks()
                if pa.types.is_dictionary(arr.type):
                    arr = arr.dictionary_decode()
                arr = float64_view(pc.drop_null(arr).cast(pa.float64()))
                values = arr[np.isfinite(arr)]
            docs.append(column.result(values, exact))
        return {
            "profile_version": PROFILE_VERSION,
            "mode": "table",
            "row_count": self.rows,
            "column_count": len(columns),
            "sample_digest": sample_digest,
            "sample_rows": sample.num_rows,
            "sample_seed": self.seed,
            "sample_exact": exact,
            "columns": docs,
        }


def profile_tables(
    sources: Sequence[TableSource],
    schema: pa.Schema | None,
    artifacts: ArtifactStore,
    progress: ByteProgress | None = None,
    restart: Callable[[], None] | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Profile ``sources`` read as one table; returns (schema columns, profile)."""
    from modelyard.data.formats import read_schema

    state, final = scan(
        sources, schema, TableProfiler, TableProfiler.visit, progress=progress, restart=restart
    )
    if final is None:
        final = read_schema(sources[0])
    if state.columns is not None:
        import pyarrow as pa

        final = pa.schema([(c.name, c.dtype) for c in state.columns])
    return schema_doc(final), state.finish(final, artifacts)


def float64_view(array: pa.Array) -> np.ndarray:
    """A numpy view of a null-free float64 Arrow array.

    ``Array.to_numpy`` imports pandas (about 35 MB resident) even for plain float arrays; reading
    the data buffer directly keeps ``data add`` inside its memory budget.
    """
    import numpy as np

    if array.null_count:
        raise InvalidValue("float64_view needs an array without nulls")
    data = array.buffers()[1]
    if data is None:
        return np.empty(0, dtype=np.float64)
    return np.frombuffer(data, dtype=np.float64, count=len(array), offset=array.offset * 8)


def int64_indices(indices: np.ndarray) -> pa.Array:
    """Arrow indices from a numpy array without ``pa.array``, which imports pandas."""
    import numpy as np
    import pyarrow as pa

    data = np.ascontiguousarray(indices, dtype=np.int64)
    return pa.Array.from_buffers(pa.int64(), len(data), [None, pa.py_buffer(data)])
