"""The artifact store's collector: remove the blobs (of the local folder or a bucket) that no
record refers to. :mod:`modelyard.garbage` runs it over a workspace, ``modelyard gc`` from the
command line.

Blobs become unreferenced when a write fails after storing its bytes (a dataset that cannot be
profiled, a run that crashed before ``log_artifact`` recorded anything). A blob is kept when:

- the metadata store names its digest anywhere (:mod:`modelyard.store.references`), or a kept
  folder manifest (or another small JSON blob) names it — manifests are followed transitively;
- or it is younger than the grace period (default one hour): every writer stores a blob before
  it records the reference, so a blob written a moment ago may be referenced a moment from now.
  Storing content again refreshes its age (see :mod:`modelyard.artifacts.local`).

Upload parts (``uploads/*.part``, the bytes of a team-server upload not yet complete) are
removed when nothing appended to them for ``upload_grace_s`` (default a day): a client can resume
an upload within that time. The team server also removes them when it starts.

A blob to remove is first renamed out of the way and its age checked again, so a writer that
stored the same content between the look and the removal keeps it (or finds it gone and writes
it again). The collector sees only the store and a callable listing the roots; it imports
neither the metadata store nor the workspace.

In a bucket (:mod:`modelyard.artifacts.s3`) an object's age is its ``LastModified`` (storing
content again renews it), looked up once more just before the delete. The collector also aborts
the multipart uploads and removes the staged direct uploads older than the upload grace period:
what writers that died (or clients that never finished) left behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.errors import InvalidParameter
from modelyard.processes import pid_alive

if TYPE_CHECKING:
    from modelyard.artifacts.local import LocalArtifactStore
    from modelyard.artifacts.s3 import S3ArtifactStore

DEFAULT_GRACE_S = 3600.0
DEFAULT_UPLOAD_GRACE_S = 86400.0
_MANIFEST_HEAD = b'{"files":'  # canonical manifests (sorted keys) start so
_JSON_LIMIT = 1_000_000  # other JSON blobs are searched for digests up to this size
_DIGEST = re.compile(rb"sha256:[0-9a-f]{64}")
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class GCResult:
    """What one collection found. In a dry run ``removed`` is what it would have removed."""

    dry_run: bool
    grace_s: float
    kept: int  # referenced blobs
    kept_bytes: int
    recent: int  # unreferenced, younger than the grace period: kept
    recent_bytes: int
    removed: int
    removed_bytes: int
    parts_removed: int = 0  # stale upload parts (in a bucket: incomplete and staged uploads)
    parts_removed_bytes: int = 0

    def with_parts(self, count: int, size: int) -> GCResult:
        return dataclasses.replace(self, parts_removed=count, parts_removed_bytes=size)


Roots = Callable[[], Iterable[str]]
"""Lists the digests the metadata records name (the collector's roots), called once per pass."""


def collect(
    artifacts: LocalArtifactStore | S3ArtifactStore,
    roots: Roots,
    *,
    grace_s: float = DEFAULT_GRACE_S,
    dry_run: bool = False,
    upload_grace_s: float = DEFAULT_UPLOAD_GRACE_S,
) -> GCResult:
    """Remove the blobs of ``artifacts`` that ``roots`` does not reach (through manifests) and
    that are older than ``grace_s`` seconds, and upload parts untouched for ``upload_grace_s``
    (with ``dry_run``, only count them). For a whole workspace use
    :func:`modelyard.garbage.collect_garbage`."""
    if grace_s < 0 or upload_grace_s < 0:
        raise InvalidParameter(
            f"a grace period cannot be negative (got {min(grace_s, upload_grace_s)})"
        )
    from modelyard.artifacts.s3 import S3ArtifactStore

    parts, parts_bytes = collect_stale_parts(artifacts.root, upload_grace_s, dry_run=dry_run)
    cutoff = time.time() - grace_s
    if isinstance(artifacts, S3ArtifactStore):
        bucket_parts, bucket_bytes = _stale_bucket_uploads(artifacts, upload_grace_s, dry_run)
        return _collect_bucket(roots, artifacts, grace_s, cutoff, dry_run).with_parts(
            parts + bucket_parts, parts_bytes + bucket_bytes
        )
    if not dry_run:
        _restore_aside(artifacts)
    live = _live(roots, lambda d: _named_in(artifacts.path(d)))
    # (before listing: a reference recorded later is covered by grace)
    kept = kept_bytes = recent = recent_bytes = removed = removed_bytes = 0
    for digest, path in _blobs(artifacts):
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if digest in live:
            kept, kept_bytes = kept + 1, kept_bytes + st.st_size
            continue
        old = st.st_mtime <= cutoff
        if old and not dry_run:
            old = _remove(artifacts, path, cutoff)  # False: stored again a moment ago
        if old:
            removed, removed_bytes = removed + 1, removed_bytes + st.st_size
        else:
            recent, recent_bytes = recent + 1, recent_bytes + st.st_size
    return GCResult(
        dry_run=dry_run,
        grace_s=grace_s,
        kept=kept,
        kept_bytes=kept_bytes,
        recent=recent,
        recent_bytes=recent_bytes,
        removed=removed,
        removed_bytes=removed_bytes,
        parts_removed=parts,
        parts_removed_bytes=parts_bytes,
    )


def collect_stale_parts(
    root: Path, grace_s: float = DEFAULT_UPLOAD_GRACE_S, *, dry_run: bool = False
) -> tuple[int, int]:
    """Remove the upload parts under ``root/uploads`` that nothing appended to for
    ``grace_s`` seconds; returns (count, bytes)."""
    cutoff = time.time() - grace_s
    count = size = 0
    for part in (root / "uploads").glob("*.part"):
        try:
            st = part.lstat()
        except FileNotFoundError:
            continue
        if st.st_mtime > cutoff:
            continue
        if not dry_run:
            try:
                part.unlink()
            except FileNotFoundError:
                continue
        count, size = count + 1, size + st.st_size
    return count, size


def _collect_bucket(
    roots: Roots, artifacts: S3ArtifactStore, grace_s: float, cutoff: float, dry_run: bool
) -> GCResult:
    """:func:`collect` over a bucket: the same rules, ages from ``LastModified``."""
    live = _live(roots, lambda d: _named_in_bucket(artifacts, d))
    counts = dict.fromkeys(("kept", "kept_bytes", "recent", "recent_bytes", "removed"), 0)
    counts["removed_bytes"] = 0
    for key, size, modified in artifacts.objects():
        digest = artifacts.digest_of(key)
        if digest is None:
            continue
        if digest in live:
            counts["kept"] += 1
            counts["kept_bytes"] += size
            continue
        old = modified <= cutoff
        if old and not dry_run:
            old = artifacts.delete_key(key, unless_newer_than=cutoff)  # False: stored again
            if old:
                artifacts.drop_cached(digest)
        what = "removed" if old else "recent"
        counts[what] += 1
        counts[f"{what}_bytes"] += size
    return GCResult(dry_run=dry_run, grace_s=grace_s, **counts)


def _stale_bucket_uploads(
    artifacts: S3ArtifactStore, grace_s: float, dry_run: bool
) -> tuple[int, int]:
    """The bucket's upload parts: multipart uploads that received nothing for ``grace_s``
    seconds are aborted, staged direct uploads as old are deleted; returns (count, bytes)."""
    cutoff = time.time() - grace_s
    count, size = artifacts.incomplete_uploads(cutoff, abort=not dry_run)
    for key, staged, modified in list(artifacts.objects("staging/")):
        if modified <= cutoff and (dry_run or artifacts.delete_key(key, unless_newer_than=cutoff)):
            count, size = count + 1, size + staged
    return count, size


def discard(
    artifacts: LocalArtifactStore | S3ArtifactStore,
    digests: Iterable[str],
    roots: Roots,
    *,
    stored_at: float,
) -> int:
    """Remove those of ``digests`` that ``roots`` does not reach and no writer has stored again
    since ``stored_at``; returns how many were removed. Not in a bucket: an object's age has
    whole seconds, too coarse to tell this writer from another one a moment later, so
    ``modelyard gc`` collects them after the grace period."""
    from modelyard.artifacts.s3 import S3ArtifactStore

    candidates = set(digests)
    if not candidates or isinstance(artifacts, S3ArtifactStore):
        return 0
    live = _live(roots, lambda d: _named_in(artifacts.path(d)))
    return sum(
        1 for d in sorted(candidates - live) if _remove(artifacts, artifacts.path(d), stored_at)
    )


def _live(roots: Roots, named_in: Callable[[str], set[str]]) -> set[str]:
    """The referenced digests and, transitively, every digest their manifests name."""
    live: set[str] = set()
    todo = list(roots())
    while todo:
        digest = todo.pop()
        if digest in live:
            continue
        live.add(digest)
        todo.extend(d for d in named_in(digest) if d not in live)
    return live


def _named_in(blob: Path) -> set[str]:
    """Digests a manifest (or another small JSON blob) names; none for anything else."""
    try:
        with blob.open("rb") as f:
            head = f.read(len(_MANIFEST_HEAD))
            if not head.startswith(_MANIFEST_HEAD) and (
                head[:1] not in (b"{", b"[") or os.fstat(f.fileno()).st_size > _JSON_LIMIT
            ):
                return set()
            data = head + f.read()
    except (FileNotFoundError, IsADirectoryError):
        return set()
    return {m.decode() for m in _DIGEST.findall(data)}


def _named_in_bucket(artifacts: S3ArtifactStore, digest: str) -> set[str]:
    """:func:`_named_in` for an object: its first bytes tell whether to read it whole."""
    found = artifacts.read_head(digest, len(_MANIFEST_HEAD))
    if found is None:
        return set()
    head, size = found
    if head.startswith(_MANIFEST_HEAD) or (head[:1] in (b"{", b"[") and size <= _JSON_LIMIT):
        return _named_in(artifacts.local_path(digest))
    return set()


def _blobs(artifacts: LocalArtifactStore) -> Iterator[tuple[str, Path]]:
    """(digest, path) of every blob under ``<root>/sha256/ab/cdef…``; anything else is not
    a blob and is left alone."""
    top = artifacts.root / "sha256"
    try:
        fans = sorted(os.scandir(top), key=lambda e: e.name)
    except FileNotFoundError:
        return
    for fan in fans:
        if len(fan.name) != 2 or not _HEX.issuperset(fan.name) or not fan.is_dir():
            continue
        for entry in sorted(os.scandir(fan.path), key=lambda e: e.name):
            name = entry.name
            if len(name) == 62 and _HEX.issuperset(name) and entry.is_file(follow_symlinks=False):
                yield f"sha256:{fan.name}{name}", Path(entry.path)


def _restore_aside(artifacts: LocalArtifactStore) -> None:
    """Put back the blobs a collector that died left aside (it may have been about to restore
    one); this run then judges them like any other."""
    for aside in (artifacts.root / "tmp").glob("gc-*"):
        match = re.fullmatch(r"gc-([0-9a-f]{64})-(\d+)", aside.name)
        if match is None or (int(match[2]) != os.getpid() and pid_alive(int(match[2]))):
            continue  # not ours, or a collector still at work
        with contextlib.suppress(FileExistsError, FileNotFoundError):
            blob = artifacts.path(f"sha256:{match[1]}")
            blob.parent.mkdir(parents=True, exist_ok=True)
            os.link(aside, blob)
        aside.unlink(missing_ok=True)


def _remove(artifacts: LocalArtifactStore, blob: Path, cutoff: float) -> bool:
    """Remove ``blob`` unless it was stored again after ``cutoff``; True if it was removed.

    Renamed aside first, then its age checked again: a writer refreshing it before the rename
    shows in that second look (and the blob goes back), one after the rename finds no blob
    and writes it anew. The fan-out folders stay: a writer may be about to rename into one.
    """
    aside_dir = artifacts.root / "tmp"
    aside_dir.mkdir(parents=True, exist_ok=True)
    aside = aside_dir / f"gc-{blob.parent.name}{blob.name}-{os.getpid()}"
    try:
        os.rename(blob, aside)
    except FileNotFoundError:
        return False  # gone already (another collector)
    if aside.lstat().st_mtime > cutoff:
        with contextlib.suppress(FileExistsError):  # a writer stored it again meanwhile
            os.link(aside, blob)
        os.unlink(aside)
        return False
    os.unlink(aside)
    return True


__all__ = [
    "DEFAULT_GRACE_S",
    "DEFAULT_UPLOAD_GRACE_S",
    "GCResult",
    "Roots",
    "collect",
    "collect_stale_parts",
    "discard",
]
