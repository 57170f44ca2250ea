"""The prediction log and the feedback log: append-only Arrow IPC segments, written before the
answer.

**A 2xx means the record is in the kernel.** A request serialises its own record (inputs,
outputs or label to JSON) when it is answered — a record that cannot be serialised refuses that
request, never its neighbours — then awaits :meth:`SegmentLog.commit`. Commits group: the first
record of a batch schedules one write on the event loop (``call_soon``), every request that
commits before it runs joins that batch, and all of them are released together once the batch
is written (one Arrow IPC message, one ``write(2)``). So the answer is sent only after its
record has reached the page cache, which a killed process cannot take back (an fsync, for a
power cut, is not paid per request). A failed write (disk full) fails every request
of its batch with :class:`~modelyard.errors.LogWriteError` (the server answers 503), is counted
as dropped, and abandons the segment, whose complete batches stay readable.

Segments are written as ``*.arrows.partial`` and renamed to ``*.arrows`` when rotated by size or
age (checked at each write) or on close, so a reader can tell finished segments from the one
being written (it reads both, and the complete batches of a segment cut short). Each process
(each worker of a multi-worker server) writes its own segments. :meth:`put` and
:meth:`put_many` write at once, for callers without an event loop.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from modelyard.errors import InvalidInput, LogWriteError

if TYPE_CHECKING:
    import asyncio

logger = logging.getLogger("modelyard.serving.predlog")

PREDICTIONS = "predictions"
FEEDBACK = "feedback"
SUFFIX = ".arrows"
PARTIAL = ".arrows.partial"
_END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # Arrow IPC: continuation, length 0
_JSON_COLUMNS = frozenset({"inputs", "outputs", "label"})

# (request_id, time_ns, model_name, model_version, endpoint, inputs, outputs, latency_s, rows,
#  variant)
PredictionRecord = tuple[str, int, str, str, str, Any, Any, float, int, str]
# (request_id, time_ns, model_name, model_version, label)
FeedbackRecord = tuple[str, int, str, str, Any]
# A record serialised for its segment: JSON as bytes, time in microseconds, latency in ms.
Row = tuple[Any, ...]


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot log a {type(obj).__name__}")


def _json(obj: Any) -> bytes:
    return orjson.dumps(obj, default=_default, option=orjson.OPT_SERIALIZE_NUMPY)


def _schema(kind: str) -> Any:
    import pyarrow as pa

    common = [
        ("request_id", pa.string()),
        ("time", pa.timestamp("us", tz="UTC")),
        ("model_name", pa.string()),
        ("model_version", pa.string()),
    ]
    if kind == PREDICTIONS:
        fields = [
            *common,
            ("endpoint", pa.string()),
            ("inputs", pa.string()),
            ("outputs", pa.string()),
            ("latency_ms", pa.float64()),
            ("rows", pa.int64()),
            # primary (the serving version), or a candidate's shadow / canary answers: both
            # answers to a mirrored request share its request_id. Segments written before this
            # column existed read as primary (see with_variant).
            ("variant", pa.string()),
        ]
    else:
        fields = [*common, ("label", pa.string())]
    return pa.schema(fields)


class SegmentLog:
    """Rotated Arrow IPC stream segments, appended by group commit (see the module docstring)."""

    def __init__(
        self,
        folder: Path,
        kind: str,
        *,
        segment_bytes: int,
        segment_seconds: float,
        on_drop: Callable[[], None] | None = None,
    ) -> None:
        self.folder = Path(folder) / kind
        self.kind = kind
        self._segment_bytes = segment_bytes
        self._segment_seconds = segment_seconds
        self._on_drop = on_drop
        self._lock = threading.Lock()  # one writer of the segment at a time
        self._pending: list[Row] = []
        self._batch: asyncio.Future[None] | None = None
        self._closed = False
        self._schema: Any = None
        self._fd: int | None = None
        self._path: Path | None = None
        self._size = 0
        self._opened = 0.0
        self._seq = 0
        self.dropped = 0  # records whose write failed (their requests were refused)
        self.written = 0

    @property
    def depth(self) -> int:
        """Records committed but not yet written (they wait for their batch's write)."""
        return len(self._pending)

    def start(self) -> None:
        # Import pyarrow here, in the caller's thread, before any request: a first import
        # racing with scikit-learn, which looks pyarrow up in sys.modules on every predict,
        # failed on a half-initialised module (a 500).
        import pyarrow.ipc  # noqa: F401

        self._schema = _schema(self.kind)
        self.folder.mkdir(parents=True, exist_ok=True)

    def encode(self, record: tuple[Any, ...]) -> Row:
        """Serialise one record now, at its request: :class:`InvalidInput` if it cannot be."""
        try:
            if self.kind == PREDICTIONS:
                if len(record) == 9:  # written before variants: the serving version's
                    record = (*record, "primary")
                rid, ns, name, version, endpoint, inputs, outputs, latency_s, rows, variant = record
                return (
                    rid, ns // 1000, name, version, endpoint,
                    _json(inputs), _json(outputs), latency_s * 1000.0, rows, variant,
                )  # fmt: skip
            rid, ns, name, version, label = record
            return (rid, ns // 1000, name, version, _json(label))
        except (TypeError, orjson.JSONEncodeError) as exc:
            what = "outputs" if self.kind == PREDICTIONS else "label"
            raise InvalidInput(f"the {what} cannot be logged as JSON: {exc}", what) from None

    async def commit(self, rows: Sequence[Row]) -> None:
        """Append ``rows`` (all in one batch) and return once they are written. Raises
        :class:`LogWriteError` if their batch could not be written."""
        import asyncio

        if self._closed:
            raise LogWriteError(f"the {self.kind} log is closed")
        batch = self._batch
        if batch is None:
            loop = asyncio.get_running_loop()
            batch = self._batch = loop.create_future()
            loop.call_soon(self._commit_batch)
        self._pending.extend(rows)
        # Shielded: a request cancelled while waiting must not cancel its neighbours' batch.
        await asyncio.shield(batch)

    def _commit_batch(self) -> None:
        rows, batch = self._pending, self._batch
        if batch is None:  # close() wrote it already
            return
        self._pending, self._batch = [], None
        try:
            self._write(rows)
        except Exception as exc:
            logger.exception("%s log: writing %d records failed", self.kind, len(rows))
            batch.set_exception(LogWriteError(f"the {self.kind} log cannot be written: {exc}"))
        else:
            batch.set_result(None)

    def put(self, record: tuple[Any, ...]) -> bool:
        """Serialise and write one record now (no event loop needed)."""
        return self.put_many((record,))

    def put_many(self, records: Sequence[tuple[Any, ...]]) -> bool:
        """Serialise all of ``records`` (refusing all if one cannot be) and write them now, as
        one batch; raises :class:`LogWriteError` if the write fails."""
        rows = [self.encode(r) for r in records]
        try:
            self._write(rows)
        except Exception as exc:
            raise LogWriteError(f"the {self.kind} log cannot be written: {exc}") from exc
        return True

    def close(self) -> None:
        """Write what is pending and close the segment. Idempotent."""
        self._closed = True
        if self._batch is not None:
            self._commit_batch()
        with self._lock:
            self._close_segment()

    def _open_segment(self) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        self._seq += 1
        # Host name too: replicas in containers share a folder and often the same pid.
        host = "".join(c if c.isalnum() else "-" for c in socket.gethostname())[:32]
        path = self.folder / f"{self.kind}-{stamp}-{host}-{os.getpid()}-{self._seq:06d}{PARTIAL}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self._fd, self._path, self._size = fd, path, 0
        self._opened = time.monotonic()
        self._append(self._schema.serialize())  # an Arrow IPC stream: the schema first

    def _append(self, data: Any) -> None:
        """One ``write(2)`` (more only if the kernel takes part of it)."""
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
            self._size += written

    def _close_segment(self) -> None:
        if self._fd is None or self._path is None:
            return
        fd, path = self._fd, self._path
        self._fd = self._path = None
        try:
            os.write(fd, _END_OF_STREAM)
        finally:
            os.close(fd)
            path.rename(path.with_name(path.name[: -len(".partial")]))

    def _abandon_segment(self) -> None:
        """After a failed write: the segment may end mid-batch, so nothing more is appended to
        it (its complete batches stay readable); the next write opens a new one."""
        try:
            self._close_segment()
        except Exception:
            logger.warning("%s log: closing a failed segment failed too", self.kind)
        self._fd = self._path = None

    def _record_batch(self, rows: list[Row]) -> Any:
        """One Arrow record batch; the JSON columns go in as binary viewed as UTF-8 strings
        (orjson wrote valid UTF-8), ten times cheaper than converting bytes to strings."""
        import pyarrow as pa

        arrays = []
        for field, column in zip(self._schema, zip(*rows, strict=True), strict=True):
            if field.name in _JSON_COLUMNS:
                arrays.append(pa.array(column, pa.binary()).view(pa.string()))
            else:
                arrays.append(pa.array(column, field.type))
        return pa.RecordBatch.from_arrays(arrays, schema=self._schema)

    def _write(self, rows: list[Row]) -> None:
        if not rows:
            return
        if self._schema is None:
            self.start()
        with self._lock:
            try:
                message = self._record_batch(rows).serialize()  # one encapsulated IPC message
                if self._fd is not None and (
                    time.monotonic() - self._opened > self._segment_seconds
                ):
                    self._close_segment()
                if self._fd is None:
                    self._open_segment()
                self._append(message)
            except Exception:
                self.dropped += len(rows)
                if self._on_drop is not None:
                    for _ in rows:
                        self._on_drop()
                self._abandon_segment()
                raise
            self.written += len(rows)
            if self._size >= self._segment_bytes:
                self._close_segment()


def _read(folder: Path, kind: str) -> Any:
    import pyarrow as pa
    import pyarrow.ipc as ipc

    schema = _schema(kind)
    batches = []
    directory = Path(folder) / kind
    paths = sorted(directory.glob(f"*{SUFFIX}")) + sorted(directory.glob(f"*{PARTIAL}"))
    for path in paths:
        try:
            reader = ipc.open_stream(pa.memory_map(str(path)))
            while True:
                try:
                    batches.append(with_variant(reader.read_next_batch()))
                except StopIteration:
                    break
        except (pa.ArrowInvalid, OSError):
            # A segment still being written may end mid-batch: keep what is complete.
            continue
    return pa.Table.from_batches(batches, schema=schema)


def with_variant(batch: Any) -> Any:
    """``batch`` of a prediction segment with its ``variant`` column: one written before the
    column existed gets ``primary`` (then only the serving version logged)."""
    import pyarrow as pa

    names = batch.schema.names
    if "variant" in names or "endpoint" not in names:
        return batch
    column = pa.array(["primary"] * batch.num_rows, pa.string())
    return pa.RecordBatch.from_arrays([*batch.columns, column], names=[*names, "variant"])


def read_predictions(folder: Path) -> Any:
    """All logged predictions under a server's ``log_dir`` as a ``pyarrow.Table``: one row per
    answered request; ``inputs``/``outputs`` are JSON (columns -> values, or nested lists)."""
    return _read(folder, PREDICTIONS)


def read_feedback(folder: Path) -> Any:
    """All ground-truth labels posted to ``/v1/feedback`` as a ``pyarrow.Table``, keyed by
    ``request_id``; ``label`` is JSON."""
    return _read(folder, FEEDBACK)
