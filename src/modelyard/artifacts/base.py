"""The artifact-store interface. Local folder now; an S3-compatible store can implement the
same methods later without any caller changing."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

from modelyard.artifacts.manifest import Manifest
from modelyard.errors import ArtifactError

Progress = Callable[[int], None]


class ArtifactStore(ABC):
    """Content-addressed blobs: ``put`` returns a ``sha256:`` digest, ``get`` verifies it."""

    read_only: bool = False

    @abstractmethod
    def put_file(self, path: Path, progress: Progress | None = None) -> str: ...

    @abstractmethod
    def put_bytes(self, data: bytes) -> str: ...

    @abstractmethod
    def exists(self, digest: str) -> bool: ...

    @abstractmethod
    def size(self, digest: str) -> int: ...

    @abstractmethod
    def get_bytes(self, digest: str) -> bytes:
        """The blob's bytes, after checking they still match the digest."""

    @abstractmethod
    def open(self, digest: str) -> BinaryIO:
        """A binary reader over a blob that has just been verified."""

    @abstractmethod
    def export_file(self, digest: str, dest: Path, mode: int | None = None) -> None:
        """Write the blob to ``dest`` atomically; a corrupted blob leaves ``dest`` untouched."""

    def put_dir(self, root: Path, progress: Progress | None = None) -> tuple[str, Manifest]:
        """Store every file under ``root`` and a manifest of them; returns the manifest digest."""
        from modelyard.artifacts.manifest import ManifestEntry, walk_files

        entries = []
        for rel, path, mode in walk_files(root):
            digest = self.put_file(path, progress)
            entries.append(ManifestEntry(rel, digest, path.stat().st_size, mode))
        manifest = Manifest(tuple(entries))
        return self.put_bytes(manifest.to_bytes()), manifest

    def read_manifest(self, digest: str) -> Manifest:
        return Manifest.from_bytes(self.get_bytes(digest), digest)

    def export_dir(self, digest: str, dest: Path) -> Manifest:
        """Materialise a stored folder under ``dest`` (created if missing)."""
        manifest = self.read_manifest(digest)
        dest.mkdir(parents=True, exist_ok=True)
        base = dest.resolve()
        for entry in manifest.entries:
            target = (base / entry.path).resolve()
            if base not in target.parents:  # defence in depth: Manifest already refuses these
                raise ArtifactError(f"manifest path {entry.path!r} escapes {dest}")
            target.parent.mkdir(parents=True, exist_ok=True)
            self.export_file(entry.digest, target, entry.mode)
        return manifest
