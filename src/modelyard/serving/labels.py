"""Feedback labels: what a label must look like before it is logged.

A label is one value per predicted row: a scalar (number, string, boolean or null) for a
one-row prediction, or a flat list of exactly ``rows`` scalars (a one-row prediction also takes a
one-element list) — the shapes the monitor joins to predictions. The rows of a prediction come
from the worker's memory of its last ``label_memory`` predictions (:class:`RecentRows`) or else
from the prediction log's rows index (:func:`modelyard.serving.predlog.logged_rows`: any
logged prediction, however old, whichever worker or replica sharing the log folder answered
it). A label for a request id that was never logged there is checked for its form and size
only.
"""

from __future__ import annotations

import collections
from typing import Any

from modelyard.errors import InvalidInput


class RecentRows:
    """request id → rows of this process's most recent predictions, at most ``size`` of them."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._rows: collections.OrderedDict[str, int] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._rows)

    def add(self, request_id: str, rows: int) -> None:
        self._rows[request_id] = rows
        if len(self._rows) > self._size:
            self._rows.popitem(last=False)

    def get(self, request_id: str) -> int | None:
        return self._rows.get(request_id)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool)


def check_label(label: Any, rows: int | None, max_rows: int, where: str) -> None:
    """Raise :class:`InvalidInput` (naming ``where``) unless ``label`` fits a prediction of
    ``rows`` rows (None: the prediction is not known here, so only the form is checked)."""
    if _scalar(label):
        if rows is not None and rows != 1:
            raise InvalidInput(
                f"{where}: the prediction has {rows} rows; send a list of {rows} labels", where
            )
        return
    if not isinstance(label, list):
        raise InvalidInput(f"{where} must be a value or a list of values, one per row", where)
    if not all(_scalar(v) for v in label):
        raise InvalidInput(
            f"{where} must hold one plain value per row (no lists or objects)", where
        )
    if rows is not None and len(label) != rows:
        raise InvalidInput(
            f"{where} has {len(label)} values but the prediction has {rows} rows", where
        )
    if not label or len(label) > max_rows:
        raise InvalidInput(f"{where} must hold 1 to {max_rows} values, not {len(label)}", where)
