"""What kind of file a dataset file is, and streaming readers for the tabular ones.

Every tabular read goes through :func:`scan`, which yields Arrow record batches of a bounded
size, so a 2 GB CSV is never held in memory. pyarrow's streaming CSV reader infers column types
from the first block only; when a later block does not fit (an integer column that turns out to
hold ``1.5``), :func:`scan` widens that one column (null → int/float/string, int → float, any →
string) and starts over, instead of failing on a perfectly good file.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, TypeVar

from modelyard.errors import DataError

if TYPE_CHECKING:
    import pyarrow as pa

FORMAT_CSV = "csv"
FORMAT_PARQUET = "parquet"
FORMAT_BINARY = "binary"
FORMAT_DIRECTORY = "directory"
TABULAR_FORMATS = frozenset({FORMAT_CSV, FORMAT_PARQUET})

_CSV_DELIMITERS = {".csv": ",", ".tsv": "\t"}
_PARQUET_SUFFIXES = frozenset({".parquet", ".pq"})
_PARQUET_MAGIC = b"PAR1"
# The streaming CSV reader's memory grows with its block size (measured: 1 MiB blocks cost
# ~85 MB of buffers on a 100 MB file, 256 KiB ~25 MB); type inference misses in the small first
# block are repaired by widening, so small blocks are the right trade.
_CSV_BLOCK_SIZE = 256 << 10
_PARQUET_BATCH_ROWS = 64_000
_MAX_WIDENINGS = 64
_CONVERSION_RE = re.compile(
    r"In CSV column #(?P<col>\d+): .*CSV conversion error to (?P<type>[\w\[\], ]+): "
    r"invalid value '(?P<value>.*)'",
    re.DOTALL,
)

ByteProgress = Callable[[int], None]
T = TypeVar("T")


def detect_format(path: Path, name: str | None = None) -> str:
    """``csv`` / ``parquet`` by the suffix of ``name`` (default: ``path``); other files are
    sniffed for the Parquet magic number (data lakes often drop the suffix) and are ``binary``
    otherwise. ``path`` holds the bytes, which may be a blob with no suffix of its own."""
    suffix = Path(name if name is not None else path.name).suffix.lower()
    if suffix in _CSV_DELIMITERS:
        return FORMAT_CSV
    if suffix in _PARQUET_SUFFIXES:
        return FORMAT_PARQUET
    with path.open("rb") as f:
        head = f.read(len(_PARQUET_MAGIC))
    return FORMAT_PARQUET if head == _PARQUET_MAGIC else FORMAT_BINARY


def csv_delimiter(name: str) -> str:
    return _CSV_DELIMITERS.get(Path(name).suffix.lower(), ",")


@dataclass(frozen=True)
class TableSource:
    """One tabular file to read: ``path`` holds the bytes (often a blob in the artifact store),
    ``label`` is what error messages call it (the user's file name)."""

    path: Path
    label: str
    format: str


class _NeedsWidening(Exception):
    def __init__(self, schema: pa.Schema, column: int, value: str) -> None:
        super().__init__(f"column #{column}")
        self.schema = schema
        self.column = column
        self.value = value


class _CountingReader(io.RawIOBase):
    """Reports bytes as the CSV reader consumes them, for a byte progress bar."""

    def __init__(self, raw: BinaryIO, progress: ByteProgress) -> None:
        super().__init__()
        self._raw = raw
        self._progress = progress

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._raw.readinto(buffer)  # type: ignore[attr-defined]
        if n:
            self._progress(n)
        return int(n or 0)

    def close(self) -> None:
        self._raw.close()
        super().close()


def _arrow_error(src: TableSource, exc: Exception) -> DataError:
    kind = "CSV" if src.format == FORMAT_CSV else "Parquet"
    detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return DataError(f"{src.label}: cannot read as {kind}: {detail}")


def read_schema(src: TableSource) -> pa.Schema:
    """The file's columns without reading its rows (CSV: inferred from the first block)."""
    import pyarrow as pa

    try:
        if src.format == FORMAT_PARQUET:
            import pyarrow.parquet as pq

            with pq.ParquetFile(src.path) as pf:
                schema = pf.schema_arrow
        else:
            with src.path.open("rb") as raw:
                reader = _open_csv(src, raw, None)
                try:
                    schema = reader.schema
                finally:
                    reader.close()
    except (pa.ArrowException, OSError) as exc:
        raise _arrow_error(src, exc) from None
    seen: set[str] = set()
    for name in schema.names:
        if name in seen:
            # Columns are addressed by name everywhere (profiles, drift, signatures).
            raise DataError(f"{src.path.name}: column {name!r} appears more than once")
        seen.add(name)
    return schema


def _memory_pool() -> Any:
    """jemalloc returns freed CSV blocks to the OS more readily than the default mimalloc,
    which keeps peak memory flat; builds without jemalloc use the default pool."""
    import pyarrow as pa

    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:
        return pa.default_memory_pool()


def _open_csv(src: TableSource, raw: BinaryIO, schema: pa.Schema | None) -> Any:
    """A streaming CSV reader over ``raw``; the caller owns (and closes) ``raw``."""
    import pyarrow.csv as pcsv

    convert = pcsv.ConvertOptions(
        column_types={f.name: f.type for f in schema} if schema is not None else None,
        strings_can_be_null=True,
    )
    return pcsv.open_csv(
        raw,
        read_options=pcsv.ReadOptions(block_size=_CSV_BLOCK_SIZE, use_threads=False),
        parse_options=pcsv.ParseOptions(delimiter=csv_delimiter(src.label)),
        convert_options=convert,
        memory_pool=_memory_pool(),
    )


def _iter_file(
    src: TableSource,
    schema: pa.Schema | None,
    progress: ByteProgress | None,
    batch_rows: int = _PARQUET_BATCH_ROWS,
) -> Iterator[pa.RecordBatch]:
    import pyarrow as pa

    try:
        if src.format == FORMAT_PARQUET:
            import pyarrow.parquet as pq

            # pre_buffer (pyarrow's default) reads every column chunk of the file ahead:
            # the whole file in memory. Without it a read holds about one batch.
            with pq.ParquetFile(src.path, pre_buffer=False) as pf:
                total_rows = max(pf.metadata.num_rows, 1)
                size = src.path.stat().st_size
                for batch in pf.iter_batches(batch_size=batch_rows):
                    if progress is not None:
                        progress(size * batch.num_rows // total_rows)
                    yield _conform(batch, schema)
            return
        raw: BinaryIO = src.path.open("rb")
        stream: Any = _CountingReader(raw, progress) if progress is not None else raw
        try:
            reader = _open_csv(src, stream, schema)
        except BaseException:
            stream.close()
            raise
        try:
            while True:
                try:
                    batch = reader.read_next_batch()
                except StopIteration:
                    return
                except pa.ArrowInvalid as exc:
                    match = _CONVERSION_RE.search(str(exc))
                    if match is None:
                        raise
                    raise _NeedsWidening(reader.schema, int(match["col"]), match["value"]) from None
                yield batch
        finally:
            reader.close()
            stream.close()
    except (pa.ArrowException, OSError) as exc:
        raise _arrow_error(src, exc) from None


def _conform(batch: pa.RecordBatch, schema: pa.Schema | None) -> pa.RecordBatch:
    """Give a batch from one file of a folder the folder's shared column order and types."""
    import pyarrow as pa

    if schema is None or batch.schema.equals(schema):
        return batch
    table = pa.Table.from_batches([batch]).select(schema.names).cast(schema)
    if not table.num_rows:
        return pa.RecordBatch.from_pylist([], schema=schema)
    return table.combine_chunks().to_batches()[0]


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _widen(schema: pa.Schema, column: int, value: str) -> pa.Schema:
    import pyarrow as pa

    current = schema.field(column).type
    if pa.types.is_null(current) and value.lstrip("+-").isdigit():
        wider = pa.int64()
    elif (pa.types.is_null(current) or pa.types.is_integer(current)) and _looks_numeric(value):
        wider = pa.float64()
    else:
        wider = pa.string()
    return schema.set(column, schema.field(column).with_type(wider))


def scan(
    sources: Sequence[TableSource],
    schema: pa.Schema | None,
    start: Callable[[], T],
    visit: Callable[[T, pa.RecordBatch], None],
    progress: ByteProgress | None = None,
    restart: Callable[[], None] | None = None,
) -> tuple[T, pa.Schema | None]:
    """Stream every batch of ``sources`` into ``visit(state, batch)``, where ``state`` comes
    from ``start()``. On a type-inference miss the column is widened and the scan restarts
    with a fresh state (``restart`` lets a progress display rewind). Returns the state and the
    schema the batches finally had."""
    for _ in range(_MAX_WIDENINGS):
        state = start()
        try:
            for src in sources:
                for batch in _iter_file(src, schema, progress):
                    visit(state, batch)
            return state, schema
        except _NeedsWidening as need:
            schema = _widen(need.schema if schema is None else schema, need.column, need.value)
            if restart is not None:
                restart()
    raise DataError(
        f"{sources[0].label}: column types keep changing deeper in the file; "
        "cannot settle on a schema"
    )


def stream(
    sources: Sequence[TableSource],
    schema: pa.Schema | None = None,
    batch_rows: int = _PARQUET_BATCH_ROWS,
) -> Iterator[pa.RecordBatch]:
    """Every batch of ``sources`` in order, pulled one at a time (Parquet in batches of
    ``batch_rows``; CSV in blocks). Give the ``schema`` a profile settled on
    (:func:`recorded_schema`): a CSV column that needs widening half-way through cannot
    restart a consumer that already used the earlier batches."""
    for src in sources:
        try:
            yield from _iter_file(src, schema, None, batch_rows)
        except _NeedsWidening as need:
            raise DataError(
                f"{src.label}: column #{need.column} holds {need.value!r}, which its recorded "
                "type does not fit"
            ) from None


def recorded_schema(columns: Sequence[dict[str, Any]]) -> pa.Schema:
    """The Arrow schema a profile recorded (``schema["columns"]`` of a dataset version)."""
    import pyarrow as pa

    fields = []
    for column in columns:
        try:
            arrow_type = pa.type_for_alias(str(column["type"]))
        except (ValueError, KeyError):
            arrow_type = pa.string()
        fields.append(pa.field(str(column["name"]), arrow_type))
    return pa.schema(fields)


def unify_schemas(schemas: Sequence[pa.Schema]) -> pa.Schema | None:
    """One schema for a folder of files, or ``None`` when the files are different tables.

    Files share a schema when they have the same column names in the same order; numeric
    columns that differ in width become float64 (CSV inference sees ``1`` in one file and
    ``1.5`` in another). Any other type difference means different tables.
    """
    import pyarrow as pa

    first = schemas[0]
    fields = list(first)
    for other in schemas[1:]:
        if other.names != first.names:
            return None
        for i, field in enumerate(other):
            mine = fields[i].type
            if field.type.equals(mine):
                continue
            numeric = (pa.types.is_integer, pa.types.is_floating, pa.types.is_null)
            if any(t(field.type) for t in numeric) and any(t(mine) for t in numeric):
                if pa.types.is_null(mine):
                    fields[i] = fields[i].with_type(field.type)
                elif not pa.types.is_null(field.type) and not field.type.equals(mine):
                    fields[i] = fields[i].with_type(pa.float64())
                continue
            if pa.types.is_null(field.type):
                continue
            return None
    return pa.schema(fields)


def read_table(sources: Sequence[TableSource], schema: pa.Schema | None = None) -> pa.Table:
    """All rows of ``sources`` as one Arrow table, with the same type widening as profiling
    (so a read sees the types its profile describes)."""
    import pyarrow as pa

    def visit(batches: list[pa.RecordBatch], batch: pa.RecordBatch) -> None:
        batches.append(batch)

    batches, final = scan(sources, schema, list, visit)
    if not batches:
        if final is None:
            final = read_schema(sources[0])
        return final.empty_table()
    return pa.Table.from_batches(batches)
