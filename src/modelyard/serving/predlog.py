"""The prediction log and the feedback log: append-only Arrow IPC segments, written before the
answer.

**A 2xx means the record is in the kernel.** A request serialises its own record (inputs,
outputs or label to JSON, the rest to the bytes its Arrow column holds) when it is answered — a
record that cannot be serialised refuses that request, never its neighbours — then awaits
:meth:`SegmentLog.commit`. Commits group: the first record of a batch schedules one write on
the event loop (``call_soon``), every request that commits before it runs joins that batch and
awaits the batch's one future, and all of them are released together once the batch is written:
one Arrow IPC message, encoded here from the records' bytes (no Arrow objects are built), and
one ``write(2)``. So the answer is sent only after its record has reached the page cache, which
a killed process cannot take back (an fsync, for a power cut, is not paid per request). A
failed write (disk full) fails every request of its batch with
:class:`~modelyard.errors.LogWriteError` (the server answers 503), is counted as dropped, and
abandons the segment, whose complete batches stay readable.

Segments are written as ``*.arrows.partial`` and renamed to ``*.arrows`` when rotated by size or
age (checked at each write) or on close, so a reader can tell finished segments from the one
being written (it reads both, and the complete batches of a segment cut short). Each process
(each worker of a multi-worker server) writes its own segments. :meth:`put` and
:meth:`put_many` write at once, for callers without an event loop.

Beside each prediction segment, ``predictions/rows/<segment>.tsv`` indexes it: one
``request_id<TAB>rows`` line per record, appended after the record's batch, so a label can be
checked against the rows of any logged prediction (:func:`logged_rows`), however old and
whichever worker or replica sharing the folder answered it.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import functools
import itertools
import logging
import mmap
import os
import socket
import struct
import threading
import time
from array import array
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from modelyard.errors import InvalidInput, LogWriteError

logger = logging.getLogger("modelyard.serving.predlog")

PREDICTIONS = "predictions"
FEEDBACK = "feedback"
SUFFIX = ".arrows"
PARTIAL = ".arrows.partial"
ROWS_INDEX = "rows"  # predictions/rows/<segment stem>.tsv: request_id<TAB>rows lines
_END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"  # Arrow IPC: continuation, length 0

# (request_id, time_ns, model_name, model_version, endpoint, inputs, outputs, latency_s, rows,
#  variant)
PredictionRecord = tuple[str, int, str, str, str, Any, Any, float, int, str]
# (request_id, time_ns, model_name, model_version, label)
FeedbackRecord = tuple[str, int, str, str, Any]
# A record serialised for its segment, one value per column as the column holds it: strings
# (JSON included) as UTF-8 bytes, time in microseconds, latency in milliseconds.
Row = tuple[Any, ...]

# Each column's layout: "s" UTF-8 string (int32 offsets), "q" 64-bit integer (the timestamp
# too), "d" 64-bit float. The order is the schema's (see _schema).
_LAYOUT = {PREDICTIONS: "sqsssssdqs", FEEDBACK: "sqsss"}


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


#: Each log's schema as the encapsulated Arrow IPC message that starts its segments (what
#: ``_schema(kind).serialize()`` gives; a test checks they agree), so a server writes its log
#: without importing pyarrow at all: 0.1-0.2 s less to its first answer, and no first import
#: of pyarrow in any thread to race scikit-learn's ``sys.modules`` look-ups.
_SCHEMA_MESSAGE = {
    PREDICTIONS: bytes.fromhex(
        "ffffffff480200001000000000000a000c000600050008000a000000000104000c0000000800080000000400"
        "08000000040000000a000000e801000094010000640100003001000000010000d4000000a80000006c000000"
        "300000000400000050feffff00000105100000001800000004000000000000000700000076617269616e7400"
        "3cfeffff78feffff000001021000000020000000040000000000000004000000726f77730000000008000c00"
        "08000700080000000000000140000000b0feffff00000103100000002400000004000000000000000a000000"
        "6c6174656e63795f6d73000000000600080006000600000000000200e8feffff000001051000000018000000"
        "0400000000000000070000006f75747075747300d4feffff10ffffff00000105100000001800000004000000"
        "0000000006000000696e707574730000fcfeffff38ffffff00000105100000001c0000000400000000000000"
        "08000000656e64706f696e740000000028ffffff64ffffff0000010510000000200000000400000000000000"
        "0d0000006d6f64656c5f76657273696f6e00000058ffffff94ffffff00000105100000001c00000004000000"
        "000000000a0000006d6f64656c5f6e616d65000084ffffffc0ffffff0000010a100000002000000004000000"
        "000000000400000074696d650000000008000c00060008000800000000000200040000000300000055544300"
        "100014000800060007000c00000010001000000000000105100000002000000004000000000000000a000000"
        "726571756573745f696400000400040004000000"
    ),
    FEEDBACK: bytes.fromhex(
        "ffffffff480100001000000000000a000c000600050008000a000000000104000c0000000800080000000400"
        "080000000400000005000000e8000000940000006400000030000000040000003cffffff0000010510000000"
        "180000000400000000000000050000006c6162656c00000028ffffff64ffffff000001051000000020000000"
        "04000000000000000d0000006d6f64656c5f76657273696f6e00000058ffffff94ffffff0000010510000000"
        "1c00000004000000000000000a0000006d6f64656c5f6e616d65000084ffffffc0ffffff0000010a10000000"
        "2000000004000000000000000400000074696d650000000008000c0006000800080000000000020004000000"
        "0300000055544300100014000800060007000c00000010001000000000000105100000002000000004000000"
        "000000000a000000726571756573745f696400000400040004000000"
    ),
}


# ---- Arrow IPC record batches, encoded by hand ----------------------------------------------
# Our schemas are fixed and flat, so a record batch's metadata (a flatbuffer) always has the
# same shape: only its numbers change, and one precompiled struct packs them. Building Arrow
# arrays and a RecordBatch to serialise cost three times as much CPU per group commit.
_MAX_COLUMN_BYTES = (1 << 31) - 1  # int32 offsets: a bigger batch is split in two


_PADDING = [bytes(-n % 8) for n in range(8)]  # zeros taking n bytes to a multiple of 8


def _pad8(n: int) -> int:
    return (n + 7) & ~7


@functools.cache
def _metadata_struct(nodes: int, buffers: int) -> struct.Struct:
    """The flatbuffer ``Message{version: V5, header: RecordBatch{length, nodes, buffers},
    bodyLength}`` for ``nodes`` columns and ``buffers`` buffers, laid out front to back (every
    offset points forward, every 8-byte value and struct 8-aligned, as a flatbuffers builder
    aligns them; 8-aligned in all, so the body that follows is too). Packed with
    :func:`_metadata_values`."""
    return struct.Struct(
        "<I6H"  # 0: root offset to the Message table (16); 4: its vtable (4 fields)
        "ihBxI4xq"  # 16: Message table: vtable, version, header_type, header, bodyLength
        "5H6x"  # 40: RecordBatch vtable (3 fields)
        "iIqI4x"  # 56: RecordBatch table: vtable, nodes, length, buffers
        f"4xI{2 * nodes}q"  # 84: FieldNode vector (count; at 88 its structs)
        f"4xI{2 * buffers}q"  # Buffer vector (count at 4 mod 8; structs 8-aligned)
    )


def _metadata_values(length: int, nodes: int, spans: list[int], body: int) -> list[int]:
    buffers_at = 88 + 16 * nodes + 4
    return [
        16, 12, 24, 4, 6, 8, 16,  # Message vtable: size, table size, field offsets
        12, 4, 3, 56 - 24, body,  # vtable 12 bytes back; V5; RecordBatch (at 56); bodyLength
        10, 24, 8, 4, 16,  # RecordBatch vtable: size, table size, field offsets
        16, 84 - 60, length, buffers_at - 72,  # vtable 16 bytes back; nodes; rows; buffers
        nodes, *[length, 0] * nodes,  # FieldNode{length, null_count}
        len(spans) // 2, *spans,  # Buffer{offset, length}
    ]  # fmt: skip


def encode_batch(layout: str, rows: Sequence[Row]) -> bytes:
    """One encapsulated Arrow IPC record batch message holding ``rows`` (0xFFFFFFFF, the
    metadata's length, the metadata, the body: every buffer padded to 8 bytes; no nulls, so
    each validity buffer is empty). A batch whose string column would pass int32 offsets is
    split in several messages."""
    columns = list(zip(*rows, strict=True))
    body: list[bytes] = []
    spans: list[int] = []  # offset, length of each buffer in the body
    at = 0
    for kind, values in zip(layout, columns, strict=True):
        if kind == "s":
            data = b"".join(values)
            if len(data) > _MAX_COLUMN_BYTES:
                if len(rows) == 1:
                    raise InvalidInput("a logged value is over 2 GiB", "inputs")
                half = len(rows) // 2
                return encode_batch(layout, rows[:half]) + encode_batch(layout, rows[half:])
            offsets = array("i", itertools.accumulate(map(len, values), initial=0)).tobytes()
            spans += (at, 0, at, len(offsets))
            at += _pad8(len(offsets))
            body += (offsets, _PADDING[len(offsets) % 8])
        else:
            data = array(kind, values).tobytes()  # 8-byte values: aligned already
            spans += (at, 0)
        spans += (at, len(data))
        body += (data, _PADDING[len(data) % 8])
        at += _pad8(len(data))
    packer = _metadata_struct(len(layout), len(spans) // 2)
    metadata = packer.pack(*_metadata_values(len(rows), len(layout), spans, at))
    return b"".join([b"\xff\xff\xff\xff", struct.pack("<i", len(metadata)), metadata, *body])


class _Batch(asyncio.Future[None]):
    """The future every request of one group commit awaits. It cannot be cancelled: a request
    cancelled while it waits (its client gone) is cancelled once the batch is written, and its
    neighbours' wait is untouched (what ``asyncio.shield`` would give, without a future more per
    request)."""

    def cancel(self, msg: Any = None) -> bool:
        return False


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
        self._layout = _LAYOUT[kind]
        self._segment_bytes = segment_bytes
        self._segment_seconds = segment_seconds
        self._on_drop = on_drop
        self._lock = threading.Lock()  # one writer of the segment at a time
        self._pending: list[Row] = []
        self._batch: _Batch | None = None
        self._closed = False
        self._schema: bytes | None = None
        self._fd: int | None = None
        self._index_fd: int | None = None
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
        self._schema = _SCHEMA_MESSAGE[self.kind]
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.kind == PREDICTIONS:
            (self.folder / ROWS_INDEX).mkdir(exist_ok=True)

    def encode(self, record: tuple[Any, ...]) -> Row:
        """Serialise one record now, at its request: :class:`InvalidInput` if it cannot be."""
        try:
            if self.kind == PREDICTIONS:
                if len(record) == 9:  # written before variants: the serving version's
                    record = (*record, "primary")
                rid, ns, name, version, endpoint, inputs, outputs, latency_s, rows, variant = record
                return (
                    rid.encode(), ns // 1000, name.encode(), version.encode(), endpoint.encode(),
                    _json(inputs), _json(outputs), latency_s * 1000.0, rows, variant.encode(),
                )  # fmt: skip
            rid, ns, name, version, label = record
            return (rid.encode(), ns // 1000, name.encode(), version.encode(), _json(label))
        except (TypeError, orjson.JSONEncodeError) as exc:
            what = "outputs" if self.kind == PREDICTIONS else "label"
            raise InvalidInput(f"the {what} cannot be logged as JSON: {exc}", what) from None
        except UnicodeEncodeError as exc:  # a lone surrogate in a name
            raise InvalidInput(f"the record cannot be logged as UTF-8: {exc}", "body") from None

    async def commit(self, rows: Sequence[Row]) -> None:
        """Append ``rows`` (all in one batch) and return once they are written. Raises
        :class:`LogWriteError` if their batch could not be written."""
        if self._closed:
            raise LogWriteError(f"the {self.kind} log is closed")
        batch = self._batch
        if batch is None:
            loop = asyncio.get_running_loop()
            batch = self._batch = _Batch(loop=loop)
            loop.call_soon(self._commit_batch)
        self._pending.extend(rows)
        await batch

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
        # And a random token: a restarted process (pid 1 again in a container) opening its
        # first segment in the same second must not replace the one its predecessor finished.
        token = os.urandom(4).hex()
        stem = f"{self.kind}-{stamp}-{host}-{os.getpid()}-{self._seq:06d}-{token}"
        path = self.folder / f"{stem}{PARTIAL}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o644)
        self._fd, self._path, self._size = fd, path, 0
        self._opened = time.monotonic()
        self._append(self._schema)  # an Arrow IPC stream: the schema first
        if self.kind == PREDICTIONS:
            index = self.folder / ROWS_INDEX / f"{stem}.tsv"
            self._index_fd = os.open(index, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.write(self._index_fd, b"\n")  # every entry follows a newline, the first too

    def _append(self, data: Any) -> None:
        """One ``write(2)`` (more only if the kernel takes part of it)."""
        assert self._fd is not None
        view = memoryview(data)
        while view:
            written = os.write(self._fd, view)
            view = view[written:]
            self._size += written

    def _index(self, rows: list[Row]) -> None:
        """Append the batch's ``request_id<TAB>rows`` lines. A failure here loses only the
        check of those labels' shapes (they are then checked for form), never a prediction."""
        if self._index_fd is None:
            return
        lines = b"".join([b"%s\t%d\n" % (r[0], r[8]) for r in rows])
        try:
            os.write(self._index_fd, lines)
        except OSError as exc:
            logger.warning("%s log: the rows index stops here: %s", self.kind, exc)
            os.close(self._index_fd)
            self._index_fd = None

    def _close_segment(self) -> None:
        if self._index_fd is not None:
            os.close(self._index_fd)
            self._index_fd = None
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
        self._fd = self._path = self._index_fd = None

    def _write(self, rows: list[Row]) -> None:
        if not rows:
            return
        if self._schema is None:
            self.start()
        with self._lock:
            try:
                message = encode_batch(self._layout, rows)
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
            self._index(rows)
            if self._size >= self._segment_bytes:
                self._close_segment()


def _is_logged_id(request_id: str) -> bool:
    """Whether ``request_id`` could have been logged: the server logs only printable ASCII ids
    of at most 200 bytes (:func:`modelyard.serving.handlers.make_request_id`)."""
    return 0 < len(request_id) <= 200 and all(33 <= ord(c) < 127 for c in request_id)


#: How much of the rows index (newest first) a label's request id is looked up in: a label
#: for an unknown id costs at most this much reading (about a million predictions' worth).
ROWS_LOOKBACK_BYTES = 64 * 1024 * 1024


def logged_rows(
    folder: Path, request_id: str, *, max_bytes: int = ROWS_LOOKBACK_BYTES
) -> int | None:
    """The rows of the newest logged prediction answered as ``request_id`` under the log folder
    ``folder`` (any worker's or replica's), from the segments' rows indexes; None if there is
    none within the newest ``max_bytes`` of them. Reads the index files newest first,
    memory-mapped, each searched once."""
    if not _is_logged_id(request_id):
        return None
    directory = Path(folder) / PREDICTIONS / ROWS_INDEX
    try:
        names = sorted(os.listdir(directory), reverse=True)
    except OSError:
        return None
    needle = b"\n" + request_id.encode() + b"\t"
    budget = max_bytes
    for name in names:
        if budget <= 0:
            return None
        try:
            with (
                open(directory / name, "rb") as fh,
                mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm,
            ):
                budget -= len(mm)
                at = mm.rfind(needle)
                if at < 0:
                    continue
                start = at + len(needle)
                end = mm.find(b"\n", start)
                if end < 0:  # a line cut short by a kill: not a complete entry
                    continue
                return int(mm[start:end])
        except (OSError, ValueError):  # empty (mmap refuses 0 bytes), vanished or garbled
            continue
    return None


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
