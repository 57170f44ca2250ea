"""Windows over the prediction log: the slices of traffic that drift and quality are judged on.

A window is either a time span (``span=timedelta(hours=1)``: one window per aligned span) or a
number of requests (``requests=1000``). Segments are streamed record batch by record batch and
only the rows of the window being built are held, so memory is bounded by the window, never by
the log. Inputs and outputs stay JSON strings until a caller asks for columns
(:meth:`Window.inputs`), so a window costs its raw log bytes plus what is decoded.
"""

from __future__ import annotations

import datetime as dt
from collections import deque
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidParameter

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa

    from modelyard.store.deploy_entities import Deployment

PREDICTIONS = "predictions"
FEEDBACK = "feedback"


@dataclass(frozen=True)
class WindowInfo:
    """Where a window sits: first and last request time (UTC), requests and rows in it."""

    start: dt.datetime | None
    end: dt.datetime | None
    requests: int
    rows: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "start": self.start.isoformat() if self.start else None,
            "end": self.end.isoformat() if self.end else None,
            "requests": self.requests,
            "rows": self.rows,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WindowInfo:
        def when(v: Any) -> dt.datetime | None:
            return dt.datetime.fromisoformat(v) if v else None

        return cls(when(data.get("start")), when(data.get("end")), data["requests"], data["rows"])


def _decode(value: str) -> Any:
    import orjson

    return orjson.loads(value)


def _flatten(values: Any) -> list[Any]:
    return list(values) if isinstance(values, list) else [values]


class Window:
    """The prediction-log rows of one window (a ``pyarrow.Table`` in ``table``)."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        times = table.column("time")
        rows = table.column("rows")
        import pyarrow.compute as pc

        n = table.num_rows
        mm = pc.min_max(times) if n else None
        self.info = WindowInfo(
            start=mm["min"].as_py() if mm is not None else None,
            end=mm["max"].as_py() if mm is not None else None,
            requests=n,
            rows=int(pc.sum(rows).as_py() or 0) if n else 0,
        )

    @property
    def request_ids(self) -> list[str]:
        return [str(v) for v in self.table.column("request_id").to_pylist()]

    def _columns(self, field: str, names: Sequence[str] | None, default: str) -> dict[str, Any]:
        import numpy as np

        out: dict[str, list[Any]] = {}
        seen = 0
        for raw, rows in zip(
            self.table.column(field).to_pylist(),
            self.table.column("rows").to_pylist(),
            strict=True,
        ):
            value = _decode(raw)
            if isinstance(value, dict):
                for key, column in value.items():
                    out.setdefault(str(key), [None] * seen).extend(_flatten(column))
            elif isinstance(value, list) and value and isinstance(value[0], list) and names:
                # rows of a [rows, n_features] tensor, in the order of ``names``
                for i, name in enumerate(names):
                    out.setdefault(name, [None] * seen).extend(r[i] for r in value)
            else:
                out.setdefault(default, [None] * seen).extend(_flatten(value))
            seen += int(rows)
            for column in out.values():  # a column absent from a request: missing values
                column.extend([None] * (seen - len(column)))
        return {k: np.asarray(v, dtype=object) for k, v in out.items()}

    def inputs(self, names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
        """The window's inputs as columns (object arrays, ``None`` for missing). Requests sent
        as a matrix are split into ``names`` (the signature's input order)."""
        return self._columns("inputs", names, "input")

    def outputs(self) -> dict[str, np.ndarray]:
        """The model's outputs as columns: ``prediction`` for a plain array, else one column
        per output name."""
        return self._columns("outputs", None, "prediction")


def _segments(log_dir: Path, kind: str) -> list[Path]:
    from modelyard.serving.predlog import PARTIAL, SUFFIX

    directory = Path(log_dir) / kind
    if not directory.is_dir():
        return []
    return sorted(directory.glob(f"*{SUFFIX}")) + sorted(directory.glob(f"*{PARTIAL}"))


def iter_batches(log_dir: Path, kind: str = PREDICTIONS) -> Iterator[pa.RecordBatch]:
    """Every record batch of one log, oldest segment first, one batch in memory at a time. A
    segment still being written may end mid-batch: what is complete is read."""
    import pyarrow as pa
    import pyarrow.ipc as ipc

    from modelyard.serving.predlog import with_variant

    for path in _segments(log_dir, kind):
        try:
            reader = ipc.open_stream(pa.memory_map(str(path)))
        except (pa.ArrowInvalid, OSError):
            continue
        while True:
            try:
                yield with_variant(reader.read_next_batch())
            except StopIteration:
                break
            except (pa.ArrowInvalid, OSError):
                break


def _filter(
    batch: pa.RecordBatch,
    since: dt.datetime | None,
    until: dt.datetime | None,
    model_version: str | None,
) -> pa.RecordBatch:
    import pyarrow as pa
    import pyarrow.compute as pc

    mask = None
    conditions = []
    if since is not None:
        conditions.append(
            pc.greater_equal(
                batch.column("time"), pa.scalar(since, batch.schema.field("time").type)
            )
        )
    if until is not None:
        conditions.append(
            pc.less(batch.column("time"), pa.scalar(until, batch.schema.field("time").type))
        )
    if model_version is not None:
        conditions.append(pc.equal(batch.column("model_version"), model_version))
    for c in conditions:
        mask = c if mask is None else pc.and_(mask, c)
    return batch if mask is None else batch.filter(mask)


def _utc(value: dt.datetime | None) -> dt.datetime | None:
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=dt.UTC)


def iter_windows(
    log_dir: Path,
    *,
    span: dt.timedelta | None = None,
    requests: int | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    model_version: str | None = None,
    partial: bool = True,
) -> Iterator[Window]:
    """Consecutive windows of the prediction log under a server's ``log_dir``.

    Give exactly one of ``span`` (windows aligned to multiples of the span since the epoch, so
    two monitors agree on boundaries) or ``requests``. ``since``/``until`` bound the time range
    (naive datetimes are UTC); ``model_version`` keeps one served version. ``partial=False``
    drops the last, incomplete window. Assumes the log is in time order, as the server writes
    it (one writer thread per log).
    """
    import pyarrow as pa

    if (span is None) == (requests is None):
        raise InvalidParameter("give exactly one of span= or requests= for a window")
    if requests is not None and requests < 1:
        raise InvalidParameter(f"a window needs at least one request, not {requests}")
    if span is not None and span <= dt.timedelta(0):
        raise InvalidParameter(f"a window span must be positive, not {span}")
    since, until = _utc(since), _utc(until)
    pending: list[pa.RecordBatch] = []
    count = 0
    bucket: int | None = None
    for batch in iter_batches(log_dir, PREDICTIONS):
        batch = _filter(batch, since, until, model_version)
        if not batch.num_rows:
            continue
        if requests is not None:
            while batch.num_rows:
                take = min(requests - count, batch.num_rows)
                pending.append(batch.slice(0, take))
                count += take
                batch = batch.slice(take)
                if count == requests:
                    yield Window(pa.Table.from_batches(pending))
                    pending, count = [], 0
            continue
        assert span is not None
        micros = batch.column("time").cast(pa.int64()).to_numpy()
        keys = micros // (span // dt.timedelta(microseconds=1))
        start = 0
        for i in range(1, len(keys) + 1):
            if i == len(keys) or keys[i] != keys[start]:
                key = int(keys[start])
                if bucket is not None and key != bucket and pending:
                    yield Window(pa.Table.from_batches(pending))
                    pending = []
                bucket = key
                pending.append(batch.slice(start, i - start))
                start = i
    if pending and partial:
        yield Window(pa.Table.from_batches(pending))


def latest_window(
    log_dir: Path,
    *,
    span: dt.timedelta | None = None,
    requests: int | None = None,
    until: dt.datetime | None = None,
    model_version: str | None = None,
) -> Window | None:
    """The most recent window: the last ``requests`` requests, or the requests in the last
    ``span`` before ``until`` (default now). Streams the log keeping at most one window of
    batches; None when nothing was logged."""
    import pyarrow as pa

    if (span is None) == (requests is None):
        raise InvalidParameter("give exactly one of span= or requests= for a window")
    until = _utc(until) or dt.datetime.now(dt.UTC)
    since = until - span if span is not None else None
    kept: deque[pa.RecordBatch] = deque()
    held = 0
    for batch in iter_batches(log_dir, PREDICTIONS):
        batch = _filter(batch, since, until, model_version)
        if not batch.num_rows:
            continue
        kept.append(batch)
        held += batch.num_rows
        if requests is not None:
            while held - kept[0].num_rows >= requests:
                held -= kept.popleft().num_rows
    if not kept:
        return None
    table = pa.Table.from_batches(list(kept))
    if requests is not None and table.num_rows > requests:
        table = table.slice(table.num_rows - requests)
    return Window(table)


def read_labels(log_dir: Path, request_ids: Collection[str]) -> dict[str, Any]:
    """Feedback labels (decoded JSON) for ``request_ids``, streaming the feedback log and
    keeping only matching ids; a label posted twice: the later one wins."""
    import pyarrow as pa
    import pyarrow.compute as pc

    wanted = pa.array(list(set(request_ids)), pa.string())
    labels: dict[str, Any] = {}
    for batch in iter_batches(log_dir, FEEDBACK):
        hit = batch.filter(pc.is_in(batch.column("request_id"), value_set=wanted))
        for rid, raw in zip(
            hit.column("request_id").to_pylist(), hit.column("label").to_pylist(), strict=True
        ):
            labels[str(rid)] = _decode(raw)
    return labels


def prediction_log_dir(dep: Deployment) -> Path | None:
    """Where ``dep``'s servers log predictions: the folder its rollout recorded
    (``config["log_dir"]``). Never a folder chosen because it exists: a ``modelyard serve`` of
    the same model logs elsewhere and is not this deployment's traffic. None when the record
    names none (a cluster's volume, or a local deployment last rolled out by an older
    modelyard: roll it out again)."""
    recorded = (dep.config or {}).get("log_dir")
    return Path(str(recorded)) if recorded else None
