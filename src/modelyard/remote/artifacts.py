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
from typing import TYPE_CHECKING

from modelyard.artifacts.cached import CachedArtifactStore
from modelyard.errors import ArtifactError, CorruptArtifact, NotFound
from modelyard.hashing import CHUNK_SIZE, digest_file, hex_of
from modelyard.remote.client import DEFAULT_TIMEOUT_S

if TYPE_CHECKING:
    import httpx

    from modelyard.remote.client import RemoteClient

DEFAULT_ATTEMPTS = 5


class RemoteArtifactStore(CachedArtifactStore):
    """``cache`` is a local folder (the workspace's artifact folder); ``client`` the server."""

    def __init__(
        self, cache: Path, client: RemoteClient, *, attempts: int = DEFAULT_ATTEMPTS
    ) -> None:
        super().__init__(cache)
        self.client = client
        self.attempts = attempts

    def __repr__(self) -> str:
        return f"RemoteArtifactStore({self.client.url!r}, cache={str(self.root)!r})"

    # -- writes: cache, then upload ------------------------------------------------------------
    def upload(self, digest: str) -> None:
        """Send a cached blob to the server, resuming from what it already has."""
        import httpx

        from modelyard.remote.client import raise_for_error

        source = self.cache.local_path(digest)
        size = source.stat().st_size
        if self._upload_direct(digest, source, size):
            return
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

    def _upload_direct(self, digest: str, source: Path, size: int) -> bool:
        """Send a large blob straight to the server's bucket through presigned part URLs;
        False when the server wants the bytes itself (a small blob, a local artifact folder)."""
        plan = self.client.post(f"/uploads/{digest}/direct", {"size": size})
        if not plan.get("direct"):
            return False
        if plan.get("complete"):
            return True
        part_size = int(plan["part_size"])
        parts = []
        with _bucket_http() as bucket, source.open("rb") as f:
            for number, url in enumerate(plan["urls"], 1):
                f.seek((number - 1) * part_size)
                etag = self._put_part(bucket, str(url), f.read(part_size))
                parts.append({"number": number, "etag": etag})
        self.client.post(  # the server reads the upload back to hash it: allow 10 MB/s
            f"/uploads/{digest}/direct/complete",
            {"session": plan["session"], "upload_id": plan["upload_id"], "parts": parts},
            timeout=DEFAULT_TIMEOUT_S + size / 10e6,
        )
        return True

    def _put_part(self, bucket: httpx.Client, url: str, data: bytes) -> str:
        import httpx

        problem = ""
        for _ in range(self.attempts):
            try:
                response = bucket.put(url, content=data)
            except httpx.TransportError as exc:
                problem = type(exc).__name__
                continue
            if response.status_code >= 500:
                problem = f"HTTP {response.status_code}"
                continue
            if not response.is_success or "etag" not in response.headers:
                raise ArtifactError(
                    f"the artifact bucket refused an upload part: HTTP {response.status_code}"
                )
            return response.headers["etag"]
        raise ArtifactError(
            f"could not send an upload part to the artifact bucket after {self.attempts} "
            f"attempts: {problem}"
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

    def download(self, digest: str) -> Path:
        """Fetch a blob into the cache with ``Range`` resumption; verify before using it."""
        final = self.path(digest)
        part_dir = self.root / "downloads"
        part_dir.mkdir(parents=True, exist_ok=True)
        part = part_dir / f"{hex_of(digest)}.part"
        url = self.client.get(f"/artifacts/{digest}/direct").get("url")
        if url:  # a large blob in the server's bucket: read it from there
            with _bucket_http() as bucket:
                self._fetch(bucket, str(url), part, digest)
        else:
            self._fetch(self.client.http, f"/artifacts/{digest}", part, digest)
        actual = digest_file(part)
        if actual != digest:
            part.unlink(missing_ok=True)
            raise CorruptArtifact(digest, f"the server sent bytes hashing to {actual}")
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(part, 0o444)
        os.replace(part, final)
        return final

    def _fetch(self, http: httpx.Client, url: str, part: Path, digest: str) -> None:
        """Download ``url`` into ``part``, resuming with ``Range`` after a broken connection."""
        import httpx

        from modelyard.remote.client import raise_for_error

        last_error: Exception | None = None
        for _ in range(self.attempts):
            have = part.stat().st_size if part.exists() else 0
            headers = {"range": f"bytes={have}-"} if have else {}
            try:
                with http.stream("GET", url, headers=headers) as response:
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


def _bucket_http() -> httpx.Client:
    """A plain client for presigned bucket URLs: the server's token is never sent there."""
    import httpx

    return httpx.Client(timeout=httpx.Timeout(DEFAULT_TIMEOUT_S, connect=10.0))


def _chunks(path: Path, offset: int) -> Iterator[bytes]:
    with path.open("rb") as f:
        f.seek(offset)
        while chunk := f.read(CHUNK_SIZE):
            yield chunk
