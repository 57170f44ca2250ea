"""A local content-addressed folder in front of a store of record (a team server, a bucket).

Writes land in the folder first, through the local store's protocol (so code that reads a blob
right after storing it reads a local file), then :meth:`upload` sends them on. Reads that miss
the folder call :meth:`download`, which fetches and verifies the blob before it is used; every
read then verifies the cached copy as the local store does.
"""

from __future__ import annotations

from abc import abstractmethod
from pathlib import Path
from typing import BinaryIO

from modelyard.artifacts.base import ArtifactStore, Progress
from modelyard.artifacts.local import LocalArtifactStore


class CachedArtifactStore(ArtifactStore):
    """Subclasses say how a cached blob reaches the store of record, how one comes back, and
    what the store of record holds (``exists``, ``size``)."""

    read_only = False

    def __init__(self, cache: Path) -> None:
        self.cache = LocalArtifactStore(cache)

    @property
    def root(self) -> Path:
        """The local cache's folder."""
        return self.cache.root

    def path(self, digest: str) -> Path:
        """Where the blob is (or would be) in the local cache."""
        return self.cache.path(digest)

    # -- writes: cache, then the store of record ----------------------------------------------
    def put_file(self, path: Path, progress: Progress | None = None, *, link: bool = False) -> str:
        digest = self.cache.put_file(path, progress, link=link)
        self.upload(digest)
        return digest

    def put_bytes(self, data: bytes) -> str:
        digest = self.cache.put_bytes(data)
        self.upload(digest)
        return digest

    def adopt(self, part: Path, digest: str) -> None:
        """Take a file already hashed to ``digest`` (a verified upload the server received)."""
        self.cache.adopt(part, digest)
        self.upload(digest)

    @abstractmethod
    def upload(self, digest: str) -> None:
        """Send the cached blob ``digest`` to the store of record (if it lacks it)."""

    # -- reads: fill the cache -----------------------------------------------------------------
    @abstractmethod
    def download(self, digest: str) -> Path:
        """Fetch ``digest`` into the cache, verified; returns its cached path."""

    def local_path(self, digest: str) -> Path:
        path = self.path(digest)
        if not path.is_file():
            self.download(digest)
        return path

    def verify(self, digest: str) -> Path:
        self.local_path(digest)
        return self.cache.verify(digest)

    def get_bytes(self, digest: str) -> bytes:
        self.local_path(digest)
        return self.cache.get_bytes(digest)

    def open(self, digest: str) -> BinaryIO:
        self.local_path(digest)
        return self.cache.open(digest)

    def export_file(self, digest: str, dest: Path, mode: int | None = None) -> None:
        self.local_path(digest)
        self.cache.export_file(digest, dest, mode)
