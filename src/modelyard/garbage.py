"""``modelyard gc`` over a workspace: the metadata store names the roots, the artifact folder's
collector (:mod:`modelyard.artifacts.gc`) removes what nothing reaches.

This is the one place that knows both stores; the collector itself sees only the artifact
folder and a callable that lists the referenced digests
(:func:`modelyard.store.references.referenced_digests`).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from modelyard.artifacts.gc import (
    DEFAULT_GRACE_S,
    DEFAULT_UPLOAD_GRACE_S,
    GCResult,
    collect,
    discard,
)
from modelyard.artifacts.local import LocalArtifactStore
from modelyard.errors import ArtifactError, UsageError

if TYPE_CHECKING:
    from modelyard.artifacts.s3 import S3ArtifactStore
    from modelyard.workspace import Workspace

__all__ = [
    "DEFAULT_GRACE_S",
    "DEFAULT_UPLOAD_GRACE_S",
    "GCResult",
    "collect_garbage",
    "discard_unreferenced",
]


def collect_garbage(
    workspace: Workspace | None = None,
    *,
    grace_s: float = DEFAULT_GRACE_S,
    dry_run: bool = False,
    upload_grace_s: float = DEFAULT_UPLOAD_GRACE_S,
) -> GCResult:
    """Remove the unreferenced blobs older than ``grace_s`` seconds from the workspace's
    artifact folder, and upload parts untouched for ``upload_grace_s`` (with ``dry_run``, only
    count them)."""
    from modelyard.workspace import resolve

    ws = resolve(workspace)
    return collect(
        _local_artifacts(ws),
        lambda: _referenced(ws),
        grace_s=grace_s,
        dry_run=dry_run,
        upload_grace_s=upload_grace_s,
    )


def discard_unreferenced(ws: Workspace, digests: Iterable[str], *, stored_at: float) -> int:
    """Remove those of ``digests`` (blobs a failed write just stored) that nothing references
    and no writer has stored again since ``stored_at``; returns how many were removed. Not in
    a team server's client: the server keeps what was uploaded, and its own gc collects it (nor
    in a bucket, see :func:`modelyard.artifacts.gc.discard`)."""
    if ws.settings.server_url:
        return 0
    return discard(_local_artifacts(ws), digests, lambda: _referenced(ws), stored_at=stored_at)


def _local_artifacts(ws: Workspace) -> LocalArtifactStore | S3ArtifactStore:
    if ws.settings.server_url:
        raise UsageError(
            f"this workspace is a client of the team server {ws.settings.server_url}; its "
            "artifacts belong to the server's workspace: run 'modelyard gc' there"
        )
    from modelyard.artifacts.s3 import S3ArtifactStore

    artifacts = ws.artifacts
    if not isinstance(artifacts, LocalArtifactStore | S3ArtifactStore):
        raise UsageError(
            f"{artifacts!r} is neither a local folder nor a bucket: 'modelyard gc' collects those"
        )
    if artifacts.read_only:
        raise ArtifactError(f"artifact store {artifacts.root} is read-only")
    return artifacts


def _referenced(ws: Workspace) -> Iterable[str]:
    from modelyard.store.core import Store
    from modelyard.store.references import referenced_digests

    store = ws.store
    if not isinstance(store, Store):  # pragma: no cover - remote workspaces are refused above
        raise UsageError("garbage collection needs the metadata store itself")
    return referenced_digests(store)
