"""Artifact blobs over HTTP: streamed both ways, resumable, verified by digest.

Uploads are keyed by the digest the client expects. Bytes are appended to
``<artifact root>/uploads/<hex>.part`` as they arrive, so a broken connection loses nothing:
the client asks for the offset (``GET /uploads/{digest}``) and continues from there with
``PUT /uploads/{digest}?offset=N&size=TOTAL``. When the part reaches ``size`` the server hashes
it and only a matching file becomes the blob. Downloads are plain files with HTTP ``Range``
support; the client hashes what it received before using it.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Path as PathParam
from fastapi import Query
from starlette.requests import ClientDisconnect, Request
from starlette.responses import FileResponse, JSONResponse, Response

from modelyard.errors import ArtifactError, CorruptArtifact, InvalidParameter, NotFound
from modelyard.hashing import digest_file, hex_of
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
            store.path(digest),
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

    @api.put("/uploads/{digest}", dependencies=[require("write")])
    async def upload(
        request: Request,
        digest: Digest,
        size: Annotated[int, Query(ge=1, le=MAX_ARTIFACT_SIZE)],
        offset: Annotated[int, Query(ge=0, le=MAX_ARTIFACT_SIZE)] = 0,
    ) -> Response:
        """Append the request body at ``offset``; the upload completes when ``size`` bytes
        are in and hash to ``digest``."""
        store = _artifacts(request)
        if store.read_only:
            raise ArtifactError("the server's artifact store is read-only")
        if store.exists(digest):
            return JSONResponse({"digest": digest, "complete": True, "offset": size})
        part = _part(store, digest)
        have = part.stat().st_size if part.exists() else 0
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
        with part.open("ab") as out:
            try:
                async for chunk in request.stream():
                    received += len(chunk)
                    if received > size:
                        break
                    out.write(chunk)
            except ClientDisconnect:
                out.flush()
                return Response(status_code=400)  # nobody is listening; the part is kept
            out.flush()
            os.fsync(out.fileno())
        if received > size:
            part.unlink(missing_ok=True)
            raise InvalidParameter(f"more than the announced {size} bytes were sent")
        if received < size:
            return JSONResponse({"digest": digest, "complete": False, "offset": received})
        actual = digest_file(part)
        if actual != digest:
            part.unlink(missing_ok=True)
            raise CorruptArtifact(digest, f"the uploaded bytes hash to {actual}")
        _commit(store, part, digest)
        return JSONResponse({"digest": digest, "complete": True, "offset": size})

    return api


def _commit(store: LocalArtifactStore, part: Path, digest: str) -> None:
    """Move a verified upload into place the way the store itself commits blobs."""
    final = store.path(digest)
    if final.is_file():
        part.unlink(missing_ok=True)
        return
    final.parent.mkdir(parents=True, exist_ok=True)
    os.chmod(part, 0o444)
    with contextlib.suppress(FileNotFoundError):  # a concurrent upload of the same bytes won
        os.replace(part, final)
