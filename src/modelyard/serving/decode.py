"""Turn request bodies (Open Inference Protocol V2, MLflow scoring, CSV) into checked batches.

Every rule the signature implies is enforced here, before the model sees anything: names,
dtypes, shapes, NaN/Infinity, empty and oversized batches. Each failure raises
:class:`~modelyard.errors.InvalidInput` naming the field, which the server answers with 422;
nothing in here may let a malformed body through to the model or crash the server.
"""

from __future__ import annotations

import csv
import io
import math
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelyard.errors import InvalidInput
from modelyard.flavors.meta import ColumnSpec, Signature

Array = np.ndarray[Any, Any]

_V2_ACCEPTS = {
    "float": {
        "FP16",
        "FP32",
        "FP64",
        "INT8",
        "INT16",
        "INT32",
        "INT64",
        "UINT8",
        "UINT16",
        "UINT32",
        "UINT64",
    },
    "int": {"INT8", "INT16", "INT32", "INT64", "UINT8", "UINT16", "UINT32", "UINT64"},
    "bool": {"BOOL"},
    "str": {"BYTES"},
}
MLFLOW_KEYS = ("dataframe_split", "dataframe_records", "instances", "inputs")


@dataclass(frozen=True)
class Batch:
    """Checked input: ``data`` is a dict of arrays (columns, or named tensors) or one array.
    With ``columns``, ``data`` is one 2-D block of those named columns, in that order (what the
    decoder makes of rows of numbers for a signature of one float dtype: the model gets the
    block as it is, or as a DataFrame over it, without 30 column arrays made and stacked again).
    """

    data: dict[str, Array] | Array
    rows: int
    columns: tuple[str, ...] | None = None

    def as_columns(self) -> dict[str, Array] | Array:
        """``data`` as named columns if it is a block, else as it is."""
        if self.columns is None:
            return self.data
        assert isinstance(self.data, np.ndarray)
        return dict(zip(self.columns, np.ascontiguousarray(self.data.T), strict=True))


def _family(dtype: str) -> str:
    if dtype.startswith("float"):
        return "float"
    if dtype.startswith(("int", "uint")):
        return "int"
    return dtype


def convert(values: Any, spec: ColumnSpec, field: str, allow_nan: bool) -> Array:
    """JSON values -> an array of ``spec.dtype``, refusing anything that would need guessing."""
    try:
        arr = np.asarray(values)
    except (ValueError, TypeError, OverflowError) as exc:
        raise InvalidInput(f"{field}: values do not form a regular array ({exc})", field) from exc
    kind = arr.dtype.kind
    family = _family(spec.dtype)
    if family == "str":
        if kind == "U" or (kind == "O" and all(isinstance(v, str) for v in arr.ravel())):
            return arr.astype(object)
        raise InvalidInput(f"{field}: expected strings", field)
    if family == "bool":
        if kind != "b":
            raise InvalidInput(f"{field}: expected booleans (true/false)", field)
        return arr
    if kind == "O":
        items = arr.ravel().tolist()
        if family == "float" and all(
            v is None or (isinstance(v, int | float) and not isinstance(v, bool)) for v in items
        ):
            arr = np.array([math.nan if v is None else v for v in items], dtype=np.float64).reshape(
                arr.shape
            )
            kind = "f"
        else:
            what = "null or mixed values" if any(v is None for v in items) else "mixed values"
            raise InvalidInput(f"{field}: expected {spec.dtype} numbers, got {what}", field)
    elif kind not in "iuf":
        got = {"b": "booleans", "U": "strings", "S": "bytes"}.get(kind, str(arr.dtype))
        raise InvalidInput(f"{field}: expected {spec.dtype} numbers, got {got}", field)
    if family == "float":
        out = arr.astype(spec.dtype, copy=False)
        if allow_nan or spec.allow_nan:
            if np.isinf(out).any():
                raise InvalidInput(f"{field}: Infinity is not allowed", field)
        elif not np.isfinite(out).all():
            raise InvalidInput(f"{field}: NaN, null or Infinity is not allowed", field)
        return out
    # integers
    if kind == "f" and (not np.isfinite(arr).all() or not (arr == np.trunc(arr)).all()):
        raise InvalidInput(f"{field}: expected {spec.dtype} integers, got fractions", field)
    info = np.iinfo(spec.dtype)
    if kind == "f":
        # Float bounds round up to 2**63 / 2**64, which do not fit: compare exclusively.
        out_of_range = arr.size and (arr.min() < float(info.min) or arr.max() >= float(info.max))
    else:
        out_of_range = arr.size and (arr.min() < info.min or arr.max() > info.max)
    if out_of_range:
        raise InvalidInput(f"{field}: values outside the {spec.dtype} range", field)
    return arr.astype(spec.dtype)


def _check_rows(rows: int, max_rows: int) -> None:
    if rows == 0:
        raise InvalidInput("empty batch: send at least one row", "inputs")
    if rows > max_rows:
        raise InvalidInput(f"too many rows: {rows} > the limit of {max_rows}", "inputs")


class Decoder:
    """Decodes the request formats for one signature and one set of limits."""

    def __init__(self, signature: Signature, *, max_rows: int, allow_nan: bool) -> None:
        self.sig = signature
        self.max_rows = max_rows
        self.allow_nan = allow_nan
        self.columns = {c.name: c for c in signature.inputs}
        self.names = signature.input_names
        # A signature of several columns of one float dtype takes rows of numbers as one block.
        dtypes = {c.dtype for c in signature.inputs}
        self._block: str | None = None
        if signature.kind == "columns" and len(self.names) > 1 and len(dtypes) == 1:
            (dtype,) = dtypes
            self._block = dtype if _family(dtype) == "float" else None
        self._positions = {n: i for i, n in enumerate(self.names)}
        self._pick = operator.itemgetter(*self.names) if self._block else None

    # ---- columns --------------------------------------------------------------------------
    def table_columns(self, columns: Mapping[str, Any]) -> Batch:
        """A batch of named columns (lists or arrays, one per signature input), checked like
        every request body: what batch scoring hands over chunk by chunk."""
        if self.sig.kind != "columns":
            raise InvalidInput("this model takes tensors, not named columns", "inputs")
        return self._from_columns(columns)

    def _from_columns(self, columns: Mapping[str, Any], rows: int | None = None) -> Batch:
        missing = [n for n in self.names if n not in columns]
        if missing:
            raise InvalidInput(f"missing column {missing[0]!r}", missing[0])
        extra = [n for n in columns if n not in self.columns]
        if extra:
            raise InvalidInput(f"unknown column {extra[0]!r}", str(extra[0]))
        out: dict[str, Array] = {}
        for name in self.names:
            values = columns[name]
            if not isinstance(values, list | np.ndarray):
                raise InvalidInput(f"column {name!r} must be a list of values", name)
            arr = convert(values, self.columns[name], f"column {name!r}", self.allow_nan)
            if arr.ndim != 1:
                raise InvalidInput(f"column {name!r} must be one value per row", name)
            if rows is None:
                rows = arr.shape[0]
            elif arr.shape[0] != rows:
                raise InvalidInput(
                    f"column {name!r} has {arr.shape[0]} rows, expected {rows}", name
                )
            out[name] = arr
        _check_rows(rows or 0, self.max_rows)
        return Batch(out, rows or 0)

    def _block_of(self, rows: Any, columns: Sequence[Any] | None) -> Batch | None:
        """Rows of plain numbers (lists, or tuples picked from records) for a block signature
        as one checked 2-D block, or None for anything else — which then takes the column by
        column path, whose checks and messages are the reference. ``columns``: the rows'
        column order (None: the signature's)."""
        if self._block is None or not 0 < len(rows) <= self.max_rows:
            return None
        order = None
        if columns is not None and list(columns) != list(self.names):
            if len(columns) != len(self.names) or set(columns) != self._positions.keys():
                return None  # unknown, missing or repeated names
            where = {c: i for i, c in enumerate(columns)}
            order = [where[n] for n in self.names]
        try:
            block = np.asarray(rows)
        except (ValueError, TypeError, OverflowError):  # ragged, or not numbers
            return None
        if block.ndim != 2 or block.dtype.kind not in "iuf" or block.shape[1] != len(self.names):
            return None
        block = block.astype(self._block, copy=False)
        if order is not None:
            block = block[:, order]
        if not np.isfinite(block).all():  # overflow to Infinity: the column path names it
            return None
        return Batch(np.ascontiguousarray(block), len(rows), self.names)

    def _from_rows(self, rows: Sequence[Any], columns: Sequence[Any], block: bool = False) -> Batch:
        """Rows (lists of values) in ``columns`` order; ``block``: try them as one block."""
        if block:
            made = self._block_of(rows, columns)
            if made is not None:
                return made
        _check_rows(len(rows), self.max_rows)
        width = len(columns)
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != width:
                raise InvalidInput(f"row {i} must be a list of {width} values", f"row {i}")
        if len(set(map(str, columns))) != width:
            raise InvalidInput("duplicate column names", "columns")
        transposed = list(zip(*rows, strict=True)) if rows else [() for _ in columns]
        return self._from_columns(
            {str(c): list(v) for c, v in zip(columns, transposed, strict=True)}, len(rows)
        )

    def _from_records(self, records: Sequence[Any], block: bool = False) -> Batch:
        """Records (objects of column -> value); ``block``: try them as one block."""
        if block and self._pick is not None:
            try:
                width = len(self.names)
                if all(len(r) == width for r in records):  # no extra keys
                    made = self._block_of(list(map(self._pick, records)), None)
                    if made is not None:
                        return made
            except (KeyError, TypeError):  # a missing column, a record not an object
                pass
        _check_rows(len(records), self.max_rows)
        expected = set(self.names)
        for i, rec in enumerate(records):
            if not isinstance(rec, dict):
                raise InvalidInput(f"record {i} must be an object", f"record {i}")
            if rec.keys() != expected:
                missing = sorted(expected - rec.keys())
                if missing:
                    raise InvalidInput(f"record {i}: missing column {missing[0]!r}", missing[0])
                extra = sorted(rec.keys() - expected)
                raise InvalidInput(f"record {i}: unknown column {extra[0]!r}", extra[0])
        return self._from_columns({n: [r[n] for r in records] for n in self.names}, len(records))

    # ---- tensors --------------------------------------------------------------------------
    def _tensor(self, spec: ColumnSpec, values: Any, shape: Sequence[int] | None) -> Array:
        field = f"input {spec.name!r}"
        arr = convert(values, spec, field, self.allow_nan)
        want = spec.shape or (-1,)
        if shape is not None:
            if len(shape) != len(want):
                raise InvalidInput(
                    f"{field}: shape {list(shape)[:8]} has {len(shape)} dimensions, "
                    f"expected {len(want)}",
                    spec.name,
                )
            if math.prod(shape) != arr.size:
                raise InvalidInput(
                    f"{field}: shape {list(shape)} needs {math.prod(shape)} values, got {arr.size}",
                    spec.name,
                )
            arr = arr.reshape(tuple(shape))
        if arr.ndim != len(want) or any(
            w not in (-1, g) for w, g in zip(want, arr.shape, strict=True)
        ):
            raise InvalidInput(
                f"{field}: shape {list(arr.shape)} does not match {list(want)}", spec.name
            )
        _check_rows(arr.shape[0], self.max_rows)
        return arr

    def _tensor_batch(self, arrays: dict[str, Array]) -> Batch:
        rows = {a.shape[0] for a in arrays.values()}
        if len(rows) != 1:
            raise InvalidInput("inputs disagree on the number of rows", "inputs")
        n = rows.pop()
        if len(self.sig.inputs) == 1:
            return Batch(next(iter(arrays.values())), n)
        return Batch(arrays, n)

    # ---- V2 -------------------------------------------------------------------------------
    def v2(self, body: Any) -> Batch:
        """A V2 request: each input's ``data`` a JSON list, or an array decoded from binary."""
        if not isinstance(body, dict):
            raise InvalidInput("the request body must be a JSON object", "body")
        inputs = body.get("inputs")
        if not isinstance(inputs, list) or not inputs:
            raise InvalidInput("'inputs' must be a non-empty list", "inputs")
        parsed: dict[str, tuple[list[int], str, Any]] = {}
        for i, item in enumerate(inputs):
            if not isinstance(item, dict):
                raise InvalidInput(f"inputs[{i}] must be an object", f"inputs[{i}]")
            name, shape = item.get("name"), item.get("shape")
            datatype, data = item.get("datatype"), item.get("data")
            if not isinstance(name, str):
                raise InvalidInput(f"inputs[{i}].name must be a string", f"inputs[{i}].name")
            if (
                not isinstance(shape, list)
                or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
                or not shape
            ):
                raise InvalidInput(f"input {name!r}: shape must be a list of sizes", name)
            if not isinstance(datatype, str):
                raise InvalidInput(f"input {name!r}: datatype must be a string", name)
            if not isinstance(data, list | np.ndarray):  # an array: binary data, already sized
                raise InvalidInput(f"input {name!r}: data must be a list", name)
            if name in parsed:
                raise InvalidInput(f"input {name!r} given twice", name)
            parsed[name] = (shape, datatype, data)
        if self.sig.kind == "columns":
            return self._v2_columns(parsed)
        if len(self.sig.inputs) == 1 and len(parsed) == 1:
            # A single-input model accepts its one tensor under any name ("input-0", ...).
            parsed = {self.sig.inputs[0].name: next(iter(parsed.values()))}
        arrays = {}
        for name, (shape, datatype, data) in parsed.items():
            spec = self.columns.get(name)
            if spec is None:
                raise InvalidInput(f"unknown input {name!r}", name)
            self._check_datatype(spec, datatype)
            arrays[name] = self._tensor(spec, data, shape)
        missing = [n for n in self.names if n not in arrays]
        if missing:
            raise InvalidInput(f"missing input {missing[0]!r}", missing[0])
        return self._tensor_batch(arrays)

    def _check_datatype(self, spec: ColumnSpec, datatype: str) -> None:
        if datatype not in _V2_ACCEPTS[_family(spec.dtype)]:
            raise InvalidInput(
                f"input {spec.name!r}: datatype {datatype} does not fit {spec.v2_datatype}",
                spec.name,
            )

    def _v2_columns(self, parsed: dict[str, tuple[list[int], str, Any]]) -> Batch:
        if len(parsed) == 1 and len(self.names) > 1:
            name, (shape, datatype, data) = next(iter(parsed.items()))
            if name not in self.columns and len(shape) == 2 and shape[1] == len(self.names):
                # One [rows, n_columns] tensor in signature order, as MLServer clients send.
                matrix = np.asarray(data, dtype=object) if len(data) else np.empty((0,))
                if matrix.size != math.prod(shape):
                    raise InvalidInput(
                        f"input {name!r}: shape {shape} does not match its data", name
                    )
                matrix = matrix.reshape(shape)
                return self._from_columns(
                    {c: matrix[:, j].tolist() for j, c in enumerate(self.names)}, shape[0]
                )
        columns: dict[str, Any] = {}
        for name, (shape, datatype, data) in parsed.items():
            spec = self.columns.get(name)
            if spec is None:
                raise InvalidInput(f"unknown column {name!r}", name)
            self._check_datatype(spec, datatype)
            if len(shape) > 2 or (len(shape) == 2 and shape[1] != 1):
                raise InvalidInput(f"column {name!r}: shape must be [rows] or [rows, 1]", name)
            flat = data.ravel() if isinstance(data, np.ndarray) else data
            if isinstance(flat, list) and flat and isinstance(flat[0], list):
                flat = [v[0] if isinstance(v, list) and len(v) == 1 else v for v in data]
            if len(flat) != shape[0]:
                raise InvalidInput(
                    f"column {name!r}: shape {shape} does not match {len(flat)} values", name
                )
            columns[name] = flat
        return self._from_columns(columns)

    # ---- MLflow ---------------------------------------------------------------------------
    def mlflow(self, body: Any, *, booleans: bool = True) -> Batch:
        """An MLflow scoring request. ``booleans``: whether the body may hold JSON ``true`` or
        ``false`` (False only if its text has neither): numpy would read ``true`` among numbers
        as 1.0, so rows of numbers are read as one block only without them."""
        return self._mlflow(body, block=not booleans)

    def _mlflow(self, body: Any, block: bool) -> Batch:
        if not isinstance(body, dict):
            raise InvalidInput(f"the body must be a JSON object with one of {MLFLOW_KEYS}", "body")
        keys = [k for k in MLFLOW_KEYS if k in body]
        if len(keys) != 1:
            raise InvalidInput(f"the body needs exactly one of {', '.join(MLFLOW_KEYS)}", "body")
        key = keys[0]
        payload = body[key]
        if key == "dataframe_split":
            if not isinstance(payload, dict) or not isinstance(payload.get("data"), list):
                raise InvalidInput("dataframe_split needs 'data' (a list of rows)", key)
            columns = payload.get("columns", list(self.names))
            if not isinstance(columns, list):
                raise InvalidInput("dataframe_split.columns must be a list", key)
            if self.sig.kind == "tensor":
                return self._mlflow_tensor(payload["data"], key)
            return self._from_rows(payload["data"], columns, block)
        if key == "dataframe_records":
            if not isinstance(payload, list):
                raise InvalidInput("dataframe_records must be a list of objects", key)
            if self.sig.kind == "tensor":
                raise InvalidInput("this model takes tensors: use 'instances' or 'inputs'", key)
            return self._from_records(payload, block)
        # instances / inputs
        if self.sig.kind == "columns":
            if isinstance(payload, dict):
                return self._from_columns(payload)
            if isinstance(payload, list) and payload and isinstance(payload[0], dict):
                return self._from_records(payload, block)
            if isinstance(payload, list):
                return self._from_rows(payload, list(self.names), block)
            raise InvalidInput(f"{key} must be a list of rows or an object of columns", key)
        return self._mlflow_tensor(payload, key)

    def _mlflow_tensor(self, payload: Any, key: str) -> Batch:
        if isinstance(payload, dict):
            extra = [k for k in payload if k not in self.columns]
            if extra:
                raise InvalidInput(f"unknown input {extra[0]!r}", str(extra[0]))
            missing = [n for n in self.names if n not in payload]
            if missing:
                raise InvalidInput(f"missing input {missing[0]!r}", missing[0])
            return self._tensor_batch(
                {n: self._tensor(self.columns[n], payload[n], None) for n in self.names}
            )
        if len(self.sig.inputs) != 1:
            raise InvalidInput(f"this model has several inputs: send {key} as an object", key)
        if not isinstance(payload, list):
            raise InvalidInput(f"{key} must be a list", key)
        spec = self.sig.inputs[0]
        return Batch(self._tensor(spec, payload, None), len(payload))

    def csv(self, text: str) -> Batch:
        try:
            rows = list(csv.reader(io.StringIO(text)))
        except csv.Error as exc:
            raise InvalidInput(f"invalid CSV: {exc}", "body") from exc
        if not rows:
            raise InvalidInput("empty CSV: the first line must name the columns", "body")
        header, body = rows[0], [r for r in rows[1:] if r]
        _check_rows(len(body), self.max_rows)
        if self.sig.kind == "tensor":
            spec = self.sig.inputs[0]
            parsed = [[_csv_value(v, spec) for v in r] for r in body]
            return Batch(self._tensor(spec, parsed, None), len(body))
        cols = {str(h): [] for h in header}  # type: dict[str, list[Any]]
        if len(cols) != len(header):
            raise InvalidInput("duplicate column names in the CSV header", "header")
        for i, r in enumerate(body):
            if len(r) != len(header):
                raise InvalidInput(
                    f"CSV row {i + 1} has {len(r)} values, expected {len(header)}", f"row {i + 1}"
                )
        for j, h in enumerate(header):
            col = self.columns.get(h)
            if col is None:
                raise InvalidInput(f"unknown column {h!r}", h)
            cols[h] = [_csv_value(r[j], col) for r in body]
        return self._from_columns(cols, len(body))


def _csv_value(text: str, spec: ColumnSpec) -> Any:
    family = _family(spec.dtype)
    if family == "str":
        return text
    if text == "":
        return None
    try:
        if family == "bool":
            low = text.lower()
            if low in ("true", "1"):
                return True
            if low in ("false", "0"):
                return False
            raise ValueError(text)
        if family == "int":
            return int(text)
        return float(text)
    except ValueError as exc:
        raise InvalidInput(
            f"column {spec.name!r}: {text!r} is not {spec.dtype}", spec.name
        ) from exc
