"""The artifact store of a team server, behind a local content-addressed cache.

Writes land in the local cache first (so code that reads a blob right after storing it, like
dataset profiling, reads a local file), then stream to the server. Reads fill the cache from
the server. Both directions move fixed-size chunks, resume after a broken connection, and check
the SHA-256 at the receiving end, so a 1 GB model moves with flat memory and arrives intact.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from modelyard.artifacts.base import ArtifactStore, Progress
from modelyard.artifacts.local import LocalArtifactStore
from modelyard.errors import ArtifactError, CorruptArtifact, NotFound
from modelyard.hashing import CHUNK_SIZE, digest_file, hex_of

if TYPE_CHECKING:
    from modelyard.remote.client import RemoteClient

DEFAULT_ATTEMPTS = 5


class RemoteArtifactStore(ArtifactStore):
    """``cache`` is a local folder (the workspace's artifact folder); ``client`` the server."""

    read_only = False

    def __init__(
        self, cache: Path, client: RemoteClient, *, attempts: int = DEFAULT_ATTEMPTS
    ) -> None:
        self.cache = LocalArtifactStore(cache)
        self.client = client
        self.attempts = attempts

    def __repr__(self) -> str:
        return f"RemoteArtifactStore({self.client.url!r}, cache={str(self.root)!r})"

    @property
    def root(self) -> Path:
        """The local cache's folder."""
        return self.cache.root

    def path(self, digest: str) -> Path:
        """Where the blob is (or would be) in the local cache."""
        return self.cache.path(digest)

    # -- writes: cache, then upload ------------------------------------------------------------
    def put_file(self, path: Path, progress: Progress | None = None) -> str:
        digest = self.cache.put_file(path, progress)
        self.upload(digest)
        return digest

    def put_bytes(self, data: bytes) -> str:
        digest = self.cache.put_bytes(data)
        self.upload(digest)
        return digest

    def upload(self, digest: str) -> None:
        """Send a cached blob to the server, resuming from what it already has."""
        import httpx

        from modelyard.remote.client import raise_for_error

        source = self.cache.local_path(digest)
        size = source.stat().st_size
        last_error: Exception | None = None
        for _ in range(self.attempts):
            try:
                status = self.client.get(f"/uploads/{digest}")
                if status["complete"]:
                    return
                offset = int(status["offset"])
                response = self.client.http.put(
                    f"/uploads/{digest}",
                    params={"offset": offset, "size": size},
                    content=_chunks(source, offset),
                    headers={"content-type": "application/octet-stream"},
                )
                if response.status_code == 409 and "offset" in response.text:
                    continue  # someone else moved the offset: ask again
                raise_for_error(response)
                if response.json().get("complete"):
                    return
            except (httpx.TransportError, ArtifactError) as exc:
                if isinstance(exc, CorruptArtifact):
                    raise
                last_error = exc
        raise ArtifactError(
            f"could not upload {digest} to {self.client.url} after {self.attempts} attempts"
            + (f": {type(last_error).__name__}" if last_error else "")
        )

    # -- reads: fill the cache from the server ------------------------------------------------
    def exists(self, digest: str) -> bool:
        if self.cache.exists(digest):
            return True
        try:
            self.client.get(f"/artifacts/{digest}/info")
        except NotFound:
            return False
        return True

    def size(self, digest: str) -> int:
        if self.cache.exists(digest):
            return self.cache.size(digest)
        return int(self.client.get(f"/artifacts/{digest}/info")["size"])

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

    def download(self, digest: str) -> Path:
        """Fetch a blob into the cache with ``Range`` resumption; verify before using it."""
        import httpx

        from modelyard.remote.client import raise_for_error

        final = self.path(digest)
        part_dir = self.root / "downloads"
        part_dir.mkdir(parents=True, exist_ok=True)
        part = part_dir / f"{hex_of(digest)}.part"
        last_error: Exception | None = None
        for _ in range(self.attempts):
            have = part.stat().st_size if part.exists() else 0
            headers = {"range": f"bytes={have}-"} if have else {}
            try:
                with self.client.http.stream(
                    "GET", f"/artifacts/{digest}", headers=headers
                ) as response:
                    if response.status_code == 416:  # we already have every byte
                        break
                    if not response.is_success:
                        response.read()
                        raise_for_error(response)
                    mode = "ab" if response.status_code == 206 else "wb"
                    with part.open(mode) as out:
                        for chunk in response.iter_bytes(CHUNK_SIZE):
                            out.write(chunk)
                break
            except httpx.TransportError as exc:
                last_error = exc
        else:
            raise ArtifactError(
                f"could not download {digest} from {self.client.url} after {self.attempts} "
                f"attempts: {type(last_error).__name__}"
            )
        actual = digest_file(part)
        if actual != digest:
            part.unlink(missing_ok=True)
            raise CorruptArtifact(digest, f"the server sent bytes hashing to {actual}")
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(part, 0o444)
        os.replace(part, final)
        return final


def _chunks(path: Path, offset: int) -> Iterator[bytes]:
    with path.open("rb") as f:
        f.seek(offset)
        while chunk := f.read(CHUNK_SIZE):
            yield chunk
