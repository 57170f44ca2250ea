"""``add``: snapshot a file or folder as the next version of a dataset.

The bytes go into the content-addressed artifact store first (streamed, atomic, deduplicated)
and are profiled from there, so the recorded profile describes exactly the bytes the version
points at even if the source changes meanwhile. Only when storing and profiling both succeed is
the version recorded; a malformed CSV leaves no trace in the metadata store, and the blobs it
just stored are removed again unless something else refers to them.

Folders: the tabular files in them (CSV, Parquet) are profiled as one table when they share a
schema (same column names in the same order; numeric widths may differ). Otherwise each is
profiled on its own (``"mode": "per_file"``, up to ``MAX_PER_FILE_PROFILES`` files; more than
that and the version carries no profile). Empty files and empty folders are refused with a
``DataError``: an empty CSV has no header to profile, and an empty snapshot is almost always a
mistake upstream.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import stat
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import ArtifactError, DataError, ModelyardError, NotFound
from modelyard.refs import validate_name

if TYPE_CHECKING:
    from modelyard.artifacts import ArtifactStore, Manifest
    from modelyard.data.formats import TableSource
    from modelyard.store import DatasetVersion
    from modelyard.workspace import Workspace

MAX_PER_FILE_PROFILES = 50
PHASE_STORE = "store"
PHASE_PROFILE = "profile"

AddProgress = Callable[[str, int, int], None]
"""``progress(phase, done_bytes, total_bytes)``; phase is ``"store"`` (hash and copy) then
``"profile"`` (tabular files only). ``done_bytes`` is cumulative and may go back to 0 when
profiling restarts after widening a column type."""


@dataclass(frozen=True)
class AddResult:
    version: DatasetVersion
    created: bool  # False: this exact content already was a version of the dataset


_Profiled = tuple[dict[str, Any] | None, dict[str, Any] | None]  # (schema, profile)


class _Meter:
    """Turns per-chunk byte counts into the cumulative ``AddProgress`` calls."""

    def __init__(self, progress: AddProgress | None, phase: str, total: int) -> None:
        self.progress = progress
        self.phase = phase
        self.total = total
        self.done = 0
        if progress is not None:
            progress(phase, 0, total)

    def __call__(self, n: int) -> None:
        self.done = min(self.done + n, self.total)
        if self.progress is not None:
            self.progress(self.phase, self.done, self.total)

    def restart(self) -> None:
        self.done = 0
        if self.progress is not None:
            self.progress(self.phase, 0, self.total)


def _user() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError):
        return None


def add(
    path: str | Path,
    *,
    name: str,
    description: str | None = None,
    workspace: Workspace | None = None,
    progress: AddProgress | None = None,
    link: bool = False,
) -> AddResult:
    """Snapshot ``path`` as dataset ``name``: identical content returns the existing version
    (``created=False``); changed content becomes version N+1.

    ``link=True`` shares the file's blocks with a local artifact store instead of copying them
    (a reflink where the filesystem has them, else a hard link): only for a file that will not
    be modified in place afterwards."""
    from modelyard.data.resolve import using_workspace

    validate_name(name, "dataset name")
    with using_workspace(workspace) as ws:
        return _add(ws, Path(path), name, description, progress, link)


def _add(
    ws: Workspace,
    source: Path,
    name: str,
    description: str | None,
    progress: AddProgress | None,
    link: bool = False,
) -> AddResult:
    from modelyard.data.formats import (
        FORMAT_DIRECTORY,
        TABULAR_FORMATS,
        TableSource,
        detect_format,
    )

    try:
        st = source.stat()
    except FileNotFoundError:
        raise DataError(f"{source}: no such file or folder") from None
    except OSError as exc:
        raise DataError(f"{source}: cannot read: {exc.strerror}") from None
    artifacts = ws.artifacts
    overlapped: _Profiled | DataError | None = None  # a file's profile, taken while storing

    if stat.S_ISDIR(st.st_mode):
        files = _walk(source)
        total = sum(p.stat().st_size for _, p, _ in files)
        meter = _Meter(progress, PHASE_STORE, total)
        digest, manifest = _put_dir(artifacts, source, meter)
        stored = [digest, *(e.digest for e in manifest.entries)]
        kind, fmt, size, count = "directory", FORMAT_DIRECTORY, manifest.size, len(manifest.entries)
        sources = []
        for entry in manifest.entries:
            blob = artifacts.local_path(entry.digest)
            entry_format = detect_format(blob, entry.path)
            if entry_format in TABULAR_FORMATS:
                label = f"{source / entry.path}"
                sources.append((entry.path, TableSource(blob, label, entry_format), entry.size))
    elif stat.S_ISREG(st.st_mode):
        if st.st_size == 0:
            raise DataError(f"{source}: the file is empty; there is nothing to snapshot")
        meter = _Meter(progress, PHASE_STORE, st.st_size)
        fmt = detect_format(source)
        kind, size, count = "file", st.st_size, 1
        sources = []
        if fmt in TABULAR_FORMATS:
            sources.append((source.name, TableSource(source, str(source), fmt), st.st_size))
        # Storing (hash and copy) and profiling read the file side by side, each on its own
        # core; the profile is of the source, so it counts only if the source did not change.
        with ThreadPoolExecutor(1, thread_name_prefix="data-add") as pool:
            storing = pool.submit(artifacts.put_file, source, meter, link=link)
            overlapped = _profile_quietly(sources, artifacts, progress, fmt) if sources else None
            try:
                digest = storing.result()
            except PermissionError:
                raise DataError(f"{source}: permission denied") from None
        stored = [digest]
        if sources and (overlapped is None or _changed(source, st, linked=link)):
            blob = artifacts.local_path(digest)  # profile exactly the stored bytes
            sources = [(source.name, TableSource(blob, str(source), fmt), st.st_size)]
            overlapped = None
        elif overlapped is not None and isinstance(overlapped, DataError):
            _discard(ws, stored, time.time())
            raise overlapped
    else:
        raise DataError(f"{source}: not a regular file or folder")
    stored_at = time.time()

    try:
        existing = ws.store.datasets.get_version(name, digest=digest)
    except NotFound:
        existing = None
    if existing is not None:
        return AddResult(existing, False)

    try:
        if kind == "file" and overlapped is not None and not isinstance(overlapped, DataError):
            schema, profile = overlapped
        else:
            schema, profile = _profile(sources, artifacts, progress, fmt=fmt)
    except DataError:
        _discard(ws, stored, stored_at)
        raise
    version, created = ws.store.datasets.add_version(
        name,
        digest=digest,
        kind=kind,
        format=fmt,
        size=size,
        file_count=count,
        schema=schema,
        profile=profile,
        source=str(source.resolve()),
        description=description,
        created_by=_user(),
    )
    return AddResult(version, created)


def _discard(ws: Workspace, stored: list[str], stored_at: float) -> None:
    """No orphan left behind; if even that fails, the error to report is still the data's
    (and 'modelyard gc' collects the blobs later)."""
    from modelyard.garbage import discard_unreferenced

    with contextlib.suppress(ModelyardError, OSError):
        discard_unreferenced(ws, stored, stored_at=stored_at)


def _profile_quietly(
    sources: list[tuple[str, TableSource, int]],
    artifacts: ArtifactStore,
    progress: AddProgress | None,
    fmt: str,
) -> _Profiled | DataError | None:
    """The profile, the data's own error (reported once the bytes are stored and can be
    discarded), or None when the file could not be read here (then the blob is profiled)."""
    try:
        return _profile(sources, artifacts, progress, fmt=fmt)
    except DataError as exc:
        return exc
    except OSError:
        return None


def _changed(source: Path, before: os.stat_result, *, linked: bool = False) -> bool:
    """Whether the file changed since ``before``. A hard link into the store changes the
    file's change time (its link count), so a linked add compares size, modification time and
    inode only."""
    try:
        now = source.stat()
    except OSError:
        return True

    def signature(st: os.stat_result) -> tuple[int, ...]:
        base = (st.st_size, st.st_mtime_ns, st.st_ino)
        return base if linked else (*base, st.st_ctime_ns)

    return signature(now) != signature(before)


def _walk(root: Path) -> list[tuple[str, Path, int]]:
    from modelyard.artifacts.manifest import walk_files

    try:
        files = walk_files(root)
    except ArtifactError as exc:
        raise DataError(str(exc)) from None
    if not files:
        raise DataError(f"{root}: the folder holds no files; there is nothing to snapshot")
    for rel, p, _ in files:
        if p.stat().st_size == 0 and Path(rel).suffix.lower() in (".csv", ".tsv"):
            raise DataError(f"{p}: the CSV file is empty (no header); cannot profile it")
    return files


def _put_dir(artifacts: ArtifactStore, root: Path, meter: _Meter) -> tuple[str, Manifest]:
    try:
        return artifacts.put_dir(root, meter)
    except ArtifactError as exc:  # a symlink appeared between the walk and the copy
        raise DataError(str(exc)) from None
    except PermissionError as exc:
        raise DataError(f"{exc.filename}: permission denied") from None


def _profile(
    sources: list[tuple[str, TableSource, int]],
    artifacts: ArtifactStore,
    progress: AddProgress | None,
    *,
    fmt: str,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(schema, profile) for the tabular files, or (None, None) when there are none."""
    from modelyard.data.formats import csv_delimiter, read_schema, unify_schemas
    from modelyard.data.profile import profile_tables

    if not sources:
        return None, None
    meter = _Meter(progress, PHASE_PROFILE, sum(size for *_, size in sources))
    schemas = [read_schema(src) for _, src, _ in sources]
    shared = unify_schemas(schemas)
    names = [rel for rel, _, _ in sources]
    if shared is not None:
        columns, profile = profile_tables(
            [src for _, src, _ in sources],
            shared if len(sources) > 1 else None,
            artifacts,
            meter,
            meter.restart,
        )
        schema: dict[str, Any] = {"columns": columns}
        if fmt == "directory":
            schema["files"] = names
            profile["files"] = names
        elif fmt == "csv":
            schema["delimiter"] = csv_delimiter(sources[0][1].label)
        return schema, profile
    if len(sources) > MAX_PER_FILE_PROFILES:
        return None, None
    per_schema: dict[str, Any] = {}
    per_profile: dict[str, Any] = {}
    for rel, src, _ in sources:
        columns, profile = profile_tables([src], None, artifacts, meter)
        per_schema[rel] = {"columns": columns}
        per_profile[rel] = profile
    return (
        {"mode": "per_file", "files": per_schema},
        {"profile_version": 1, "mode": "per_file", "files": per_profile},
    )
