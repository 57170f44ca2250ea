"""``checkout``: materialise a dataset version as files, verified against its digests; and
``read_frame``: load a tabular version into pandas."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path, PurePath
from typing import TYPE_CHECKING

from modelyard.errors import AlreadyExists, DataError
from modelyard.refs import Ref

if TYPE_CHECKING:
    import pandas as pd

    from modelyard.data.formats import TableSource
    from modelyard.store import DatasetVersion
    from modelyard.workspace import Workspace


def file_name(version: DatasetVersion) -> str:
    """The name a single-file version had when it was added (its default checkout name)."""
    if version.source:
        base = PurePath(version.source.replace("\\", "/")).name
        if base and base not in {".", ".."}:
            return base
    return version.name


def checkout(
    ref: str | Ref,
    dest: str | Path | None = None,
    force: bool = False,
    workspace: Workspace | None = None,
) -> Path:
    """Write version ``ref`` to ``dest`` (default: its original file name, or the dataset name
    for folders, in the current folder) and return the path written.

    Every blob is re-hashed while it is copied; a corrupted one raises ``CorruptArtifact`` and
    leaves ``dest`` untouched (folders are assembled in a hidden sibling folder first). An
    existing non-empty ``dest`` is refused unless ``force``; with ``force`` the version's files
    overwrite their namesakes and other files already in ``dest`` are left alone.
    """
    from modelyard.data.resolve import resolve, using_workspace

    with using_workspace(workspace) as ws:
        version = resolve(ref, ws)
        return _checkout(ws, version, dest, force)


def _checkout(ws: Workspace, version: DatasetVersion, dest: str | Path | None, force: bool) -> Path:
    if version.kind == "file":
        target = Path(dest) if dest is not None else Path.cwd() / file_name(version)
        if target.is_dir():
            target = target / file_name(version)
        if target.is_dir() or (target.exists() and not target.is_file()):
            raise AlreadyExists(f"{target} exists and is not a file")
        if target.is_file() and target.stat().st_size and not force:
            raise AlreadyExists(
                f"{target} already exists; pass --force (force=True) to overwrite it"
            )
        ws.artifacts.export_file(version.digest, target)
        return target

    target = Path(dest) if dest is not None else Path.cwd() / version.name
    if target.exists() and not target.is_dir():
        raise AlreadyExists(f"{target} exists and is not a folder")
    occupied = target.is_dir() and any(target.iterdir())
    if occupied and not force:
        raise AlreadyExists(
            f"{target} is not empty; pass --force (force=True) to overwrite the files in it"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.checkout-"))
    try:
        manifest = ws.artifacts.export_dir(version.digest, staging)
        os.chmod(staging, 0o755)
        if not target.exists() or not occupied:
            if target.exists():
                target.rmdir()
            os.replace(staging, target)
            return target
        # Every conflict is found before the first file moves: a refused checkout leaves the
        # folder exactly as it was, never half old and half new.
        for entry in manifest.entries:
            final = target / entry.path
            if final.is_dir():
                raise AlreadyExists(f"{final} is a folder; cannot overwrite it with a file")
            for parent in final.relative_to(target).parents:
                if (
                    parent != Path(".")
                    and (target / parent).exists()
                    and not (target / parent).is_dir()
                ):
                    raise AlreadyExists(
                        f"{target / parent} is a file; the version has a folder there"
                    )
        try:
            for entry in manifest.entries:
                final = target / entry.path
                final.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / entry.path, final)
        except OSError as exc:
            raise DataError(f"checkout into {target} failed: {exc.strerror or exc}") from None
        return target
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def tabular_sources(version: DatasetVersion, workspace: Workspace) -> list[TableSource]:
    """The verified blobs that make up a tabular version, in profile order."""
    from modelyard.data.formats import TABULAR_FORMATS, TableSource

    artifacts = workspace.artifacts
    if version.kind == "file" and version.format in TABULAR_FORMATS:
        label = f"{version.ref}/{file_name(version)}"
        return [TableSource(artifacts.verify(version.digest), label, version.format)]
    profile = version.profile or {}
    if version.kind == "directory" and profile.get("mode") == "table":
        from modelyard.data.formats import detect_format

        wanted = set(profile.get("files", []))
        sources = []
        for entry in artifacts.read_manifest(version.digest).entries:
            if entry.path in wanted:
                blob = artifacts.verify(entry.digest)
                sources.append(
                    TableSource(
                        blob, f"{version.ref}/{entry.path}", detect_format(blob, entry.path)
                    )
                )
        return sources
    raise DataError(
        f"dataset {version.ref} is not one table ({version.format}"
        f"{', files with different schemas' if profile.get('mode') == 'per_file' else ''}); "
        "check it out and read the files instead"
    )


def read_frame(ref: str | Ref, workspace: Workspace | None = None) -> pd.DataFrame:
    """A tabular version (CSV, Parquet, or a folder of same-schema files) as a DataFrame, read
    from verified blobs with the column types its profile describes."""
    from modelyard.data.formats import read_schema, read_table, unify_schemas
    from modelyard.data.resolve import resolve, using_workspace

    with using_workspace(workspace) as ws:
        sources = tabular_sources(resolve(ref, ws), ws)
    shared = unify_schemas([read_schema(s) for s in sources]) if len(sources) > 1 else None
    frame: pd.DataFrame = read_table(sources, shared).to_pandas()
    return frame
