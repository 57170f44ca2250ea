"""Infer a :class:`Signature` from the data a model was trained or tried on.

A DataFrame (or a dict of 1-d arrays) becomes a table of named columns; an ndarray becomes a
tensor whose first dimension is the batch (-1). Columns in the example that contain NaN are
marked ``allow_nan`` so the server accepts missing values where training had them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from modelyard.errors import FlavorError
from modelyard.flavors.meta import DTYPES, ColumnSpec, Signature


def _dtype_name(values: np.ndarray[Any, Any], what: str) -> str:
    kind = values.dtype.kind
    if kind in "biuf":
        name = str(values.dtype.name)
        if name in DTYPES:
            return name
    if kind in "US":
        return "str"
    if kind == "O":
        non_null = [v for v in values.ravel().tolist() if v is not None and v == v]
        if all(isinstance(v, str) for v in non_null):
            return "str"
        if all(isinstance(v, bool) for v in non_null):
            return "bool"
        if all(isinstance(v, int | float) and not isinstance(v, bool) for v in non_null):
            return "float64"
    raise FlavorError(
        f"{what}: cannot describe values of dtype {values.dtype} in a signature "
        "(supported: bool, integers, floats, strings); pass signature= explicitly"
    )


def _has_nan(values: np.ndarray[Any, Any]) -> bool:
    if values.dtype.kind == "f":
        return bool(np.isnan(values).any())
    if values.dtype.kind == "O":
        return any(v is None or v != v for v in values.ravel().tolist())
    return False


def _is_dataframe(obj: Any) -> bool:
    # Checked by name so that pandas is imported only if the caller already uses it.
    return type(obj).__name__ == "DataFrame" and hasattr(obj, "columns")


def _is_series(obj: Any) -> bool:
    return type(obj).__name__ == "Series" and hasattr(obj, "to_numpy")


def _columns(data: Mapping[str, np.ndarray[Any, Any]]) -> tuple[ColumnSpec, ...]:
    specs = []
    for name, values in data.items():
        if values.ndim != 1:
            raise FlavorError(
                f"column {name!r} must be one value per row, got shape {values.shape}"
            )
        specs.append(
            ColumnSpec(
                name=str(name),
                dtype=_dtype_name(values, f"column {name!r}"),
                allow_nan=_has_nan(values),
            )
        )
    return tuple(specs)


def _tensor(name: str, values: np.ndarray[Any, Any]) -> ColumnSpec:
    if values.ndim == 0:
        raise FlavorError(f"{name!r}: a scalar is not a batch; give at least one row")
    return ColumnSpec(
        name=name,
        dtype=_dtype_name(values, name),
        shape=(-1, *values.shape[1:]),
        allow_nan=_has_nan(values),
    )


def _describe(data: Any, default_name: str) -> tuple[tuple[ColumnSpec, ...], str]:
    if _is_dataframe(data):
        return _columns({str(c): data[c].to_numpy() for c in data.columns}), "columns"
    if _is_series(data):
        name = str(data.name) if data.name is not None else default_name
        return _columns({name: data.to_numpy()}), "columns"
    if isinstance(data, Mapping):
        arrays = {str(k): np.asarray(v) for k, v in data.items()}
        if arrays and all(a.ndim == 1 for a in arrays.values()):
            return _columns(arrays), "columns"
        return tuple(_tensor(k, a) for k, a in arrays.items()), "tensor"
    if isinstance(data, np.ndarray | list | tuple):
        return (_tensor(default_name, np.asarray(data)),), "tensor"
    raise FlavorError(
        f"cannot infer a signature from {type(data).__name__}; give a DataFrame, an ndarray "
        "or a dict of arrays"
    )


def infer_signature(inputs: Any, outputs: Any = None) -> Signature:
    """Describe ``inputs`` (and ``outputs`` when given) as a signature.

    Why the example and not the model: estimators rarely expose dtypes, and a DataFrame's
    column names and dtypes are exactly what the server must check requests against.
    """
    in_specs, kind = _describe(inputs, "input-0")
    out_specs: tuple[ColumnSpec, ...] = ()
    if outputs is not None:
        if isinstance(outputs, np.ndarray | list | tuple) or _is_series(outputs):
            values = np.asarray(outputs)
            out_specs = (_tensor("predict", values),)
        else:
            out_specs, _ = _describe(outputs, "predict")
            out_specs = tuple(
                s if s.shape is not None else ColumnSpec(s.name, s.dtype, (-1,), s.allow_nan)
                for s in out_specs
            )
    return Signature(inputs=in_specs, outputs=out_specs, kind=kind)  # type: ignore[arg-type]
