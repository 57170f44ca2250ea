"""The artifact-store contract (:class:`ArtifactStore`). A local folder and a team server
implement it; an S3-compatible store can implement the same methods without any caller
changing. :attr:`modelyard.workspace.Workspace.artifacts` is typed as this protocol."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO, Protocol

from modelyard.artifacts.manifest import Manifest
from modelyard.errors import ArtifactError

Progress = Callable[[int], None]


class ArtifactStore(Protocol):
    """Content-addressed blobs: ``put_*`` returns a ``sha256:`` digest, every read checks it.

    The contract every artifact store keeps (the local folder, a team server's behind a local
    cache; an S3-compatible store is the next): implement the abstract methods and subclass
    this protocol explicitly to inherit the folder operations (``put_dir``, ``read_manifest``,
    ``export_dir``), which are written in terms of the others.

    - A blob is stored whole or not at all: a failed or interrupted ``put_*`` leaves nothing
      under the digest (at most unreferenced bytes the garbage collector removes).
    - Reads verify: bytes that no longer hash to their digest raise
      :class:`~modelyard.errors.CorruptArtifact`, never reach the caller, and never overwrite a
      destination. A digest the store does not hold raises :class:`~modelyard.errors.NotFound`.
    - Storing the same content twice returns the same digest and is cheap.
    - A store for another place (remote, object storage) keeps a local cache where it must
      hand out a file (:meth:`local_path`, :meth:`verify`).
    """

    read_only: bool
    """True for a store that refuses writes (``put_*`` raise :class:`ArtifactError`)."""

    @abstractmethod
    def put_file(self, path: Path, progress: Progress | None = None, *, link: bool = False) -> str:
        """Store a file's bytes; ``progress`` is called with each chunk's size. ``link`` lets
        a local store share the file's blocks instead of copying them (a reflink, else a hard
        link): only for files nobody will modify in place."""

    @abstractmethod
    def put_bytes(self, data: bytes) -> str:
        """Store ``data``; returns its digest."""

    @abstractmethod
    def exists(self, digest: str) -> bool:
        """Whether the store holds the blob (without reading it)."""

    @abstractmethod
    def size(self, digest: str) -> int:
        """The blob's size in bytes."""

    @abstractmethod
    def get_bytes(self, digest: str) -> bytes:
        """The blob's bytes, after checking they still match the digest."""

    @abstractmethod
    def open(self, digest: str) -> BinaryIO:
        """A binary reader over a blob that has just been verified."""

    @abstractmethod
    def export_file(self, digest: str, dest: Path, mode: int | None = None) -> None:
        """Write the blob to ``dest`` atomically; a corrupted blob leaves ``dest`` untouched."""

    @abstractmethod
    def verify(self, digest: str) -> Path:
        """A local file holding the blob, re-hashed now; the file must not be modified."""

    @abstractmethod
    def local_path(self, digest: str) -> Path:
        """A local file holding the blob, not re-hashed (for reading back what was just
        stored or verified); the file must not be modified."""

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
