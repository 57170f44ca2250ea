"""Artifact blobs over HTTP: streamed both ways, resumable, verified by digest.

Uploads are keyed by the digest the client expects. Bytes are appended to
``<artifact root>/uploads/<hex>.part`` as they arrive, so a broken connection loses nothing:
the client asks for the offset (``GET /uploads/{digest}``) and continues from there with
``PUT /uploads/{digest}?offset=N&size=TOTAL``. When the part reaches ``size`` the server hashes
it and only a matching file becomes the blob. Uploads of one digest take turns (a lock per
digest), and writing, hashing and committing run in worker threads, off the event loop.
Downloads are plain files with HTTP ``Range`` support; the client hashes what it received
before using it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

from fastapi import Path as PathParam
from fastapi import Query
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response

from modelyard.errors import (
    ArtifactError,
    CorruptArtifact,
    InsufficientStorage,
    InvalidParameter,
    NotFound,
    PayloadTooLarge,
)
from modelyard.hashing import CHUNK_SIZE, digest_file, hex_of
from modelyard.server.auth import require

if TYPE_CHECKING:
    from fastapi import APIRouter

    from modelyard.artifacts import LocalArtifactStore

DIGEST_PATTERN = r"^sha256:[0-9a-f]{64}$"
Digest = Annotated[str, PathParam(pattern=DIGEST_PATTERN, description="sha256:<64 hex>")]
MAX_ARTIFACT_SIZE = 1 << 40  # 1 TiB: a bound, so a typo cannot ask the disk for an exabyte


def _artifacts(request: Request) -> LocalArtifactStore:
    store: LocalArtifactStore = request.app.state.workspace.artifacts
    return store


def _part(store: LocalArtifactStore, digest: str) -> Path:
    folder = store.root / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{hex_of(digest)}.part"


def router() -> APIRouter:
    from fastapi import APIRouter

    api = APIRouter(tags=["artifacts"])

    @api.get("/artifacts/{digest}/info", dependencies=[require("read")])
    def info(request: Request, digest: Digest) -> dict[str, Any]:
        """Whether the server holds the blob, and its size."""
        store = _artifacts(request)
        if not store.exists(digest):
            raise NotFound(f"artifact {digest} is not on the server")
        return {"digest": digest, "size": store.size(digest)}

    @api.get(
        "/artifacts/{digest}",
        dependencies=[require("read")],
        response_class=Response,
        responses={200: {"content": {"application/octet-stream": {}}}},
    )
    def download(request: Request, digest: Digest) -> Response:
        """The blob's bytes; honours ``Range: bytes=N-`` so a client can resume."""
        store = _artifacts(request)
        if not store.exists(digest):
            raise NotFound(f"artifact {digest} is not on the server")
        return FileResponse(
            store.local_path(digest),
            media_type="application/octet-stream",
            headers={"x-modelyard-digest": digest},
        )

    @api.get("/uploads/{digest}", dependencies=[require("write")])
    def upload_status(request: Request, digest: Digest) -> dict[str, Any]:
        """How many bytes of an interrupted upload the server already has."""
        store = _artifacts(request)
        if store.exists(digest):
            return {"digest": digest, "complete": True, "offset": store.size(digest)}
        part = _part(store, digest)
        offset = part.stat().st_size if part.exists() else 0
        return {"digest": digest, "complete": False, "offset": offset}

    locks = _DigestLocks()

    @api.put("/uploads/{digest}", dependencies=[require("write")])
    async def upload(
        request: Request,
        digest: Digest,
        size: Annotated[int, Query(ge=1, le=MAX_ARTIFACT_SIZE)],
        offset: Annotated[int, Query(ge=0, le=MAX_ARTIFACT_SIZE)] = 0,
    ) -> Response:
        """Append the request body at ``offset``; the upload completes when ``size`` bytes
        are in and hash to ``digest``. Uploads of one digest take turns: a second one waits,
        then finds the blob complete or the offset moved (409, and the client asks again)."""
        store = _artifacts(request)
        if store.read_only:
            raise ArtifactError("the server's artifact store is read-only")
        _check_announced(request, store, size, offset)
        async with locks.hold(digest):
            return await _receive(request, store, digest, size, offset)

    return api


def check_upload_limit(request: Request, size: int) -> None:
    """Refuse an upload announced over the server's cap (413)."""
    limit: int = request.app.state.limits.max_upload_bytes
    if size > limit:
        raise PayloadTooLarge(f"an upload of {size} bytes is over this server's limit of {limit}")


def _check_announced(request: Request, store: LocalArtifactStore, size: int, offset: int) -> None:
    """Refuse before reading: an upload over the server's cap, a body longer than what is
    left of the announced size, or a size the disk cannot hold."""
    check_upload_limit(request, size)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > size - offset:
        raise PayloadTooLarge(
            f"a body of {length} bytes does not fit the {max(size - offset, 0)} bytes left of "
            f"the announced {size}"
        )
    existing = store.root
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent  # the artifact folder is made by the first write
    free = shutil.disk_usage(existing).free
    if size - offset > free:
        raise InsufficientStorage(
            f"the server has {free} bytes free, not the {size - offset} this upload needs"
        )


class _DigestLocks:
    """One lock per digest being uploaded, dropped when nobody holds or waits for it.

    The lock, not the part file, is what makes an upload exclusive: two writers appending to
    one part would interleave their bytes. It serialises the uploads of one server process,
    which owns its uploads folder."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @contextlib.asynccontextmanager
    async def hold(self, digest: str) -> AsyncIterator[None]:
        lock, users = self._locks.get(digest, (None, 0))
        lock = lock or asyncio.Lock()
        self._locks[digest] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            _, users = self._locks[digest]
            if users == 1:
                del self._locks[digest]
            else:
                self._locks[digest] = (lock, users - 1)


async def _receive(
    request: Request, store: LocalArtifactStore, digest: str, size: int, offset: int
) -> Response:
    """The body of one upload, streamed on the event loop and written, hashed and committed
    in worker threads, so a big upload never stalls the server's other requests."""
    complete = {"digest": digest, "complete": True, "offset": size}
    found = await run_in_threadpool(_open_part, store, digest)
    if found is None:
        return JSONResponse(complete)
    part, have = found
    if offset != have:
        return JSONResponse(
            {
                "error": "OffsetMismatch",
                "message": f"the server has {have} bytes of this upload, not {offset}",
                "offset": have,
            },
            status_code=409,
        )
    received = have
    pending = bytearray()  # written a CHUNK_SIZE at a time: one thread hop per MiB
    out = await run_in_threadpool(part.open, "ab")
    try:
        try:
            async for chunk in request.stream():
                received += len(chunk)
                if received > size:
                    break
                pending += chunk
                if len(pending) >= CHUNK_SIZE:
                    await run_in_threadpool(out.write, pending)
                    pending.clear()
        except ClientDisconnect:
            await run_in_threadpool(_flush, out, pending, False)
            return Response(status_code=400)  # nobody is listening; the part is kept
        if received <= size:
            await run_in_threadpool(_flush, out, pending, True)
    finally:
        out.close()
    if received > size:
        await run_in_threadpool(part.unlink, missing_ok=True)
        raise InvalidParameter(f"more than the announced {size} bytes were sent")
    if received < size:
        return JSONResponse({"digest": digest, "complete": False, "offset": received})
    actual = await run_in_threadpool(_verify_and_commit, store, part, digest)
    if actual != digest:
        raise CorruptArtifact(digest, f"the uploaded bytes hash to {actual}")
    return JSONResponse(complete)


def _open_part(store: LocalArtifactStore, digest: str) -> tuple[Path, int] | None:
    """The part file of an upload and how many bytes it holds; None if the blob is in."""
    if store.exists(digest):
        return None
    part = _part(store, digest)
    return part, part.stat().st_size if part.exists() else 0


def _flush(out: BinaryIO, pending: bytearray, durable: bool) -> None:
    out.write(pending)
    out.flush()
    if durable:
        os.fsync(out.fileno())


def _verify_and_commit(store: LocalArtifactStore, part: Path, digest: str) -> str:
    """Hash a complete part; commit it if it matches, drop it if not. Returns its digest."""
    actual = digest_file(part)
    if actual != digest:
        part.unlink(missing_ok=True)
    else:
        _commit(store, part, digest)
    return actual


def _commit(store: LocalArtifactStore, part: Path, digest: str) -> None:
    """Move a verified upload into place the way the store itself commits blobs."""
    with contextlib.suppress(FileNotFoundError):  # a concurrent upload of the same bytes won
        store.adopt(part, digest)
