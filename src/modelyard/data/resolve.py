"""Looking datasets up: ``list``, ``versions`` and ``resolve`` (a reference → one version)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from modelyard.errors import InvalidReference
from modelyard.refs import Ref
from modelyard.workspace import resolve as resolve_workspace

if TYPE_CHECKING:
    from modelyard.store import Dataset, DatasetVersion
    from modelyard.workspace import Workspace


@contextlib.contextmanager
def using_workspace(workspace: Workspace | None) -> Iterator[Workspace]:
    """The caller's workspace (left open), or the one around the current folder, closed
    afterwards so a one-off API call does not leak store connections."""
    if workspace is not None:
        yield workspace
        return
    found = resolve_workspace(None)
    try:
        yield found
    finally:
        found.close()


def list_datasets(workspace: Workspace | None = None) -> list[Dataset]:
    """Every dataset, by name, with its latest version number."""
    with using_workspace(workspace) as ws:
        return ws.store.datasets.all()


def versions(name: str, workspace: Workspace | None = None) -> list[DatasetVersion]:
    """All versions of ``name``, oldest first."""
    ref = Ref.parse(name, kind="dataset name")
    if str(ref) != ref.name:
        raise InvalidReference(f"give a dataset name without '@', not {name!r}")
    with using_workspace(workspace) as ws:
        return ws.store.datasets.versions(ref.name)


def resolve(ref: str | Ref, workspace: Workspace | None = None) -> DatasetVersion:
    """The version ``ref`` names: ``NAME`` / ``NAME@latest`` (latest), ``NAME@3``,
    ``NAME@sha256:…``. Datasets have no aliases, so ``NAME@prod`` is a usage error."""
    parsed = ref if isinstance(ref, Ref) else Ref.parse(ref, kind="dataset reference")
    if parsed.alias is not None:
        raise InvalidReference(
            f"dataset reference {str(parsed)!r}: datasets have no aliases; use NAME, "
            "NAME@VERSION, NAME@latest or NAME@sha256:<hex>"
        )
    with using_workspace(workspace) as ws:
        return ws.store.datasets.get_version(parsed.name, parsed.version, digest=parsed.digest)


show = resolve
