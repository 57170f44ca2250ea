"""Versioned datasets: snapshot files and folders into the artifact store with a schema and a
statistical profile, list and show versions, diff them, and check them out again.

The functions mirror ``modelyard data …``; each takes ``workspace=None`` meaning the workspace
around the current folder.
"""

from modelyard.data.add import AddProgress, AddResult, add
from modelyard.data.checkout import checkout, read_frame
from modelyard.data.diff import ColumnShift, DatasetDiff, TypeChange, diff
from modelyard.data.profile import PROFILE_VERSION
from modelyard.data.resolve import list_datasets as list  # mirrors `data list`
from modelyard.data.resolve import resolve, show, versions

__all__ = [
    "PROFILE_VERSION",
    "AddProgress",
    "AddResult",
    "ColumnShift",
    "DatasetDiff",
    "TypeChange",
    "add",
    "checkout",
    "diff",
    "list",
    "read_frame",
    "resolve",
    "show",
    "versions",
]
