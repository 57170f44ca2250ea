"""Every artifact digest the metadata store names: the roots of the artifact garbage collector.

Rather than a list of the columns that hold a digest today (dataset versions, run artifacts,
model versions, a run's environment lock and git diff, pipeline outputs and cache entries, a
profile's sample, a monitor report's reference…), every textual and JSON column of every table
is searched for ``sha256:<64 hex>``. A column added tomorrow is covered without anyone
remembering the collector, and a string that merely looks like a digest (an image digest, a
cache key) costs nothing but keeping a blob that happens to match it: the scan errs towards
keeping.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelyard.store.core import Store

DIGEST_PATTERN = re.compile(r"sha256:[0-9a-f]{64}")

# Tables that can never name a blob, and are large or sensitive enough to leave alone.
_SKIPPED = frozenset(
    {
        "run_metrics",  # numbers under metric names: the biggest table by far
        "api_tokens",  # token hashes
        "monitor_leases",
        "alembic_version",
    }
)


def referenced_digests(store: Store) -> set[str]:
    """The digests named anywhere in the store's tables (not following manifests: that takes
    the blobs, see :mod:`modelyard.artifacts.gc`)."""
    from sqlalchemy import JSON, ColumnElement, String, Text, cast, select

    from modelyard.store.tables import metadata

    found: set[str] = set()
    with store.db.engine.connect() as conn:
        for table in metadata.sorted_tables:
            if table.name in _SKIPPED:
                continue
            for column in table.columns:
                text: ColumnElement[Any]
                if isinstance(column.type, JSON):
                    text = cast(column, Text)
                elif isinstance(column.type, String):
                    text = column
                else:
                    continue
                query = select(text).where(text.like("%sha256:%"))
                for (value,) in conn.execute(query):
                    found.update(DIGEST_PATTERN.findall(value))
    return found


__all__ = ["DIGEST_PATTERN", "referenced_digests"]
