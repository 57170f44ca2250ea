"""Directory manifests: a folder is stored as the list of its files' digests.

The manifest is itself a blob (canonical JSON), so a folder's digest is its manifest's digest and
two identical folders share everything. Paths in a manifest come back from storage and are
checked again before anything is written with them.
"""

from __future__ import annotations

import json
import stat
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from modelyard.errors import ArtifactError

MANIFEST_MEDIA_TYPE = "application/vnd.modelyard.manifest.v1+json"


@dataclass(frozen=True)
class ManifestEntry:
    path: str  # relative POSIX path
    digest: str
    size: int
    mode: int  # permission bits only


@dataclass(frozen=True)
class Manifest:
    entries: tuple[ManifestEntry, ...]

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)

    def to_bytes(self) -> bytes:
        doc = {
            "mediaType": MANIFEST_MEDIA_TYPE,
            "files": [
                {"path": e.path, "digest": e.digest, "size": e.size, "mode": e.mode}
                for e in sorted(self.entries, key=lambda e: e.path)
            ],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes, digest: str) -> Manifest:
        try:
            doc = json.loads(data)
            if doc.get("mediaType") != MANIFEST_MEDIA_TYPE:
                raise ValueError("not a modelyard manifest")
            entries = tuple(
                ManifestEntry(
                    safe_relative_path(str(f["path"])),
                    str(f["digest"]),
                    int(f["size"]),
                    int(f["mode"]) & 0o777,
                )
                for f in doc["files"]
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ArtifactError(
                f"artifact {digest} is not a valid folder manifest: {exc}"
            ) from None
        return cls(entries)

    def diff(self, other: Manifest) -> tuple[list[str], list[str], list[str]]:
        """(added, removed, changed) paths going from ``self`` to ``other``."""
        mine = {e.path: e.digest for e in self.entries}
        theirs = {e.path: e.digest for e in other.entries}
        added = sorted(set(theirs) - set(mine))
        removed = sorted(set(mine) - set(theirs))
        changed = sorted(p for p in set(mine) & set(theirs) if mine[p] != theirs[p])
        return added, removed, changed


def safe_relative_path(path: str) -> str:
    """``path`` if it stays inside the folder it is relative to; raises otherwise."""
    p = PurePosixPath(path)
    if not path or p.is_absolute() or any(part in {"..", ""} for part in p.parts) or "\\" in path:
        raise ArtifactError(f"unsafe path in manifest: {path!r}")
    return p.as_posix()


def walk_files(root: Path) -> list[tuple[str, Path, int]]:
    """(relative path, absolute path, mode) of every regular file under ``root``, sorted.

    Symlinks are refused rather than followed: a snapshot must not silently pull in files from
    outside the folder.
    """
    found: list[tuple[str, Path, int]] = []
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        if stat.S_ISLNK(st.st_mode):
            raise ArtifactError(f"{path}: symbolic links are not snapshotted; copy the target in")
        if stat.S_ISREG(st.st_mode):
            found.append((path.relative_to(root).as_posix(), path, stat.S_IMODE(st.st_mode)))
    return found
