"""Direct transfer: clients move large blobs straight to and from the artifact bucket.

When the server's artifacts live in a bucket (``MODELYARD_ARTIFACTS_URL=s3://…``), it hands an
authorised client presigned URLs instead of carrying the bytes itself:

- ``POST /uploads/{digest}/direct {"size": N}`` starts a multipart upload at a *staging* key
  (``<prefix>/staging/<hex>/<session>``) and returns one presigned ``PUT`` URL per part. The
  client sends the parts, then ``POST /uploads/{digest}/direct/complete`` with their ETags. The
  server completes the upload, streams the staged object once from the bucket to hash it, and
  only if it hashes to ``digest`` copies it (server-side, inside the bucket) to the content key;
  the staged object is deleted either way. A client cannot record a digest whose bytes differ.
- ``GET /artifacts/{digest}/direct`` returns a presigned ``GET`` URL (the client re-hashes what
  it downloads).

Small blobs (under ``DIRECT_MIN_SIZE``) and servers whose artifacts are a local folder answer
``{"direct": false}``: the client uses the ordinary routes. Nothing here is kept in the server
process: an upload session is its staging key and the bucket's upload id, so any replica can
complete what another started, and two uploads of one digest stage separately and copy the same
bytes.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import BaseModel, Field
from starlette.requests import Request

from modelyard.errors import CorruptArtifact, InvalidParameter
from modelyard.hashing import CHUNK_SIZE
from modelyard.server.artifacts_api import MAX_ARTIFACT_SIZE, Digest, check_upload_limit
from modelyard.server.auth import require

if TYPE_CHECKING:
    from fastapi import APIRouter

    from modelyard.artifacts.s3 import S3ArtifactStore

DIRECT_MIN_SIZE = 8 << 20  # below 8 MiB the extra round trips cost more than the server hop


class DirectUpload(BaseModel):
    size: Annotated[int, Field(ge=1, le=MAX_ARTIFACT_SIZE)]


class UploadedPart(BaseModel):
    number: Annotated[int, Field(ge=1, le=10_000)]
    etag: Annotated[str, Field(min_length=1, max_length=200)]


class CompleteUpload(BaseModel):
    session: Annotated[str, Field(pattern=r"^[0-9a-f]{32}$")]
    upload_id: Annotated[str, Field(min_length=1, max_length=1024)]
    parts: Annotated[list[UploadedPart], Field(min_length=1, max_length=10_000)]


def _bucket(request: Request) -> S3ArtifactStore | None:
    from modelyard.artifacts.s3 import S3ArtifactStore

    store = request.app.state.workspace.artifacts
    return store if isinstance(store, S3ArtifactStore) else None


def router() -> APIRouter:
    from fastapi import APIRouter

    api = APIRouter(tags=["artifacts"])

    @api.post("/uploads/{digest}/direct", dependencies=[require("write")])
    def start_upload(request: Request, digest: Digest, body: DirectUpload) -> dict[str, Any]:
        """Presigned part URLs for a large upload, or ``direct: false`` (use ``PUT
        /uploads/{digest}``), or ``complete: true`` when the bucket already holds the blob."""
        from modelyard.artifacts.s3 import part_size_for

        store = _bucket(request)
        if store is None or body.size < DIRECT_MIN_SIZE:
            return {"digest": digest, "direct": False}
        check_upload_limit(request, body.size)
        if store.read_only:
            raise InvalidParameter("the server's artifact store is read-only")
        if store.refresh(digest):
            return {"digest": digest, "direct": True, "complete": True}
        session = uuid.uuid4().hex
        key = store.staging_key(digest, session)
        with store.bucket_errors(f"starting the upload of {digest}"):
            upload_id = store.s3.create_multipart_upload(Bucket=store.location.bucket, Key=key)[
                "UploadId"
            ]
        part_size = part_size_for(body.size, store.part_size)
        count = -(-body.size // part_size)
        urls = [
            store.presign(
                "upload_part",
                {"Key": key, "UploadId": upload_id, "PartNumber": number},
            )
            for number in range(1, count + 1)
        ]
        return {
            "digest": digest,
            "direct": True,
            "complete": False,
            "session": session,
            "upload_id": upload_id,
            "part_size": part_size,
            "urls": urls,
        }

    @api.post("/uploads/{digest}/direct/complete", dependencies=[require("write")])
    def complete_upload(request: Request, digest: Digest, body: CompleteUpload) -> dict[str, Any]:
        """Finish a direct upload: the staged bytes become the blob only if they hash to
        ``digest`` (checked here, reading them from the bucket)."""
        store = _bucket(request)
        if store is None:
            raise InvalidParameter("this server's artifacts are not in a bucket")
        key = store.staging_key(digest, body.session)
        bucket = store.location.bucket
        parts = [{"PartNumber": p.number, "ETag": p.etag} for p in body.parts]
        with store.bucket_errors(f"completing the upload of {digest}"):
            store.s3.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=body.upload_id, MultipartUpload={"Parts": parts}
            )
        try:
            actual = _hash_object(store, key)
            if actual != digest:
                raise CorruptArtifact(digest, f"the uploaded bytes hash to {actual}")
            store.copy_within(key, store.key(digest))
        finally:
            store.delete_key(key)
        return {"digest": digest, "complete": True}

    @api.get("/artifacts/{digest}/direct", dependencies=[require("read")])
    def download_url(request: Request, digest: Digest) -> dict[str, Any]:
        """A presigned URL to read a large blob straight from the bucket, or ``url: null``
        (use ``GET /artifacts/{digest}``)."""
        from modelyard.errors import NotFound

        store = _bucket(request)
        if store is None:
            return {"digest": digest, "url": None}
        head = store.head(digest)
        if head is None:
            raise NotFound(f"artifact {digest} is not on the server")
        size = int(head["ContentLength"])
        if size < DIRECT_MIN_SIZE:
            return {"digest": digest, "url": None, "size": size}
        return {
            "digest": digest,
            "url": store.presign("get_object", {"Key": store.key(digest)}),
            "size": size,
        }

    return api


def _hash_object(store: S3ArtifactStore, key: str) -> str:
    """The digest of an object, streamed from the bucket a chunk at a time."""
    h = hashlib.sha256()
    with store.bucket_errors(f"verifying {key}"):
        body = store.s3.get_object(Bucket=store.location.bucket, Key=key)["Body"]
        try:
            for chunk in body.iter_chunks(CHUNK_SIZE):
                h.update(chunk)
        finally:
            body.close()
    return f"sha256:{h.hexdigest()}"
