"""The prediction log and the feedback log: append-only Arrow IPC segments, written off the
request path.

The server only appends a tuple to a bounded in-memory queue (O(1), no I/O, no serialisation);
one background thread per log drains the queue every ``flush_seconds``, serialises inputs and
outputs to JSON and appends a record batch to the open segment. Segments are written as
``*.arrows.partial`` and renamed to ``*.arrows`` when rotated by size or age, or on close, so a
reader can tell finished segments from the one being written (it reads both). A full queue
drops the record, counts it and logs a warning — never silently — and :meth:`close` drains
everything that was queued.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

logger = logging.getLogger("modelyard.serving.predlog")

PREDICTIONS = "predictions"
FEEDBACK = "feedback"
SUFFIX = ".arrows"
PARTIAL = ".arrows.partial"

# (request_id, time_ns, model_name, model_version, endpoint, inputs, outputs, latency_s, rows)
PredictionRecord = tuple[str, int, str, str, str, Any, Any, float, int]
# (request_id, time_ns, model_name, model_version, label)
FeedbackRecord = tuple[str, int, str, str, Any]


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    raise TypeError(f"cannot log a {type(obj).__name__}")


def _json(obj: Any) -> str:
    return orjson.dumps(obj, default=_default, option=orjson.OPT_SERIALIZE_NUMPY).decode()


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
        ]
    else:
        fields = [*common, ("label", pa.string())]
    return pa.schema(fields)


class SegmentLog:
    """A bounded queue drained by one thread into rotated Arrow IPC stream segments."""

    def __init__(
        self,
        folder: Path,
        kind: str,
        *,
        queue_size: int,
        segment_bytes: int,
        segment_seconds: float,
        flush_seconds: float,
        on_drop: Callable[[], None] | None = None,
        on_depth: Callable[[int], None] | None = None,
    ) -> None:
        self.folder = Path(folder) / kind
        self.kind = kind
        self._max = queue_size
        self._segment_bytes = segment_bytes
        self._segment_seconds = segment_seconds
        self._flush_seconds = flush_seconds
        self._on_drop = on_drop
        self.on_depth = on_depth  # told the backlog each time the writer thread wakes
        self._queue: collections.deque[tuple[Any, ...]] = collections.deque()
        self._wake = threading.Event()
        self._stop = False
        self._thread: threading.Thread | None = None
        self._writer: Any = None
        self._sink: Any = None
        self._path: Path | None = None
        self._opened = 0.0
        self._seq = 0
        self.dropped = 0
        self.written = 0
        self._last_warning = 0.0

    @property
    def depth(self) -> int:
        return len(self._queue)

    def put(self, record: tuple[Any, ...]) -> bool:
        """Queue one record; False (and counted, and logged) if the queue is full."""
        return self.put_many((record,))

    def put_many(self, records: Sequence[tuple[Any, ...]]) -> bool:
        """Queue all of ``records`` or none (counted and logged as dropped): a client that
        retries a refused batch must not log its first part twice."""
        if len(self._queue) + len(records) > self._max:
            self.dropped += len(records)
            if self._on_drop is not None:
                for _ in records:
                    self._on_drop()
            now = time.monotonic()
            if now - self._last_warning > 5.0:
                self._last_warning = now
                logger.warning(
                    "%s log queue full (%d): dropped %d records so far",
                    self.kind,
                    self._max,
                    self.dropped,
                )
            return False
        self._queue.extend(records)
        return True

    def start(self) -> None:
        # Import pyarrow here, in the caller's thread, before the writer thread exists: a first
        # import inside the writer thread races with scikit-learn, which looks pyarrow up in
        # sys.modules on every predict and fails on a half-initialised module (a 500).
        import pyarrow.ipc  # noqa: F401

        self.folder.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(
            target=self._run, name=f"modelyard-{self.kind}-log", daemon=True
        )
        self._thread.start()

    def close(self) -> None:
        """Drain everything queued, close the segment and stop the thread."""
        self._stop = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._drain()
        self._close_segment()

    def _run(self) -> None:
        while not self._stop:
            self._wake.wait(self._flush_seconds)
            self._wake.clear()
            try:
                if self.on_depth is not None:
                    self.on_depth(len(self._queue))
                self._drain()
                if self._writer is not None and (
                    time.monotonic() - self._opened > self._segment_seconds
                ):
                    self._close_segment()
            except Exception:  # keep draining: losing the logger would lose every record
                logger.exception("%s log: writing a segment failed", self.kind)

    def _open_segment(self) -> None:
        import pyarrow as pa
        import pyarrow.ipc as ipc

        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S")
        self._seq += 1
        # Host name too: replicas in containers share a folder and often the same pid.
        host = "".join(c if c.isalnum() else "-" for c in socket.gethostname())[:32]
        self._path = (
            self.folder / f"{self.kind}-{stamp}-{host}-{os.getpid()}-{self._seq:06d}{PARTIAL}"
        )
        self._sink = pa.OSFile(str(self._path), "wb")
        self._writer = ipc.new_stream(self._sink, _schema(self.kind))
        self._opened = time.monotonic()

    def _close_segment(self) -> None:
        if self._writer is None or self._path is None:
            return
        self._writer.close()
        self._sink.close()
        self._path.rename(self._path.with_name(self._path.name[: -len(".partial")]))
        self._writer = self._sink = self._path = None

    def _drain(self) -> None:
        records = []
        while self._queue:
            records.append(self._queue.popleft())
        if not records:
            return
        try:
            self._write(records)
        except Exception:
            # Disk full, an unserialisable output...: the records are gone, so say so in
            # /metrics (dropped) as well as in the log, never silently.
            self.dropped += len(records)
            if self._on_drop is not None:
                for _ in records:
                    self._on_drop()
            raise

    def _write(self, records: list[tuple[Any, ...]]) -> None:
        import pyarrow as pa

        schema = _schema(self.kind)
        columns: list[list[Any]] = [list(c) for c in zip(*records, strict=True)]
        columns[1] = [dt.datetime.fromtimestamp(ns / 1e9, dt.UTC) for ns in columns[1]]
        if self.kind == PREDICTIONS:
            columns[5] = [_json(v) for v in columns[5]]
            columns[6] = [_json(v) for v in columns[6]]
            columns[7] = [v * 1000.0 for v in columns[7]]
        else:
            columns[4] = [_json(v) for v in columns[4]]
        batch = pa.record_batch(columns, schema=schema)
        if self._writer is None:
            self._open_segment()
        self._writer.write_batch(batch)
        self.written += len(records)
        if self._sink.tell() >= self._segment_bytes:
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
                    batches.append(reader.read_next_batch())
                except StopIteration:
                    break
        except (pa.ArrowInvalid, OSError):
            # A segment still being written may end mid-batch: keep what is complete.
            continue
    return pa.Table.from_batches(batches, schema=schema)


def read_predictions(folder: Path) -> Any:
    """All logged predictions under a server's ``log_dir`` as a ``pyarrow.Table``: one row per
    answered request; ``inputs``/``outputs`` are JSON (columns -> values, or nested lists)."""
    return _read(folder, PREDICTIONS)


def read_feedback(folder: Path) -> Any:
    """All ground-truth labels posted to ``/v1/feedback`` as a ``pyarrow.Table``, keyed by
    ``request_id``; ``label`` is JSON."""
    return _read(folder, FEEDBACK)
