"""Content-addressed blobs in an S3-compatible bucket: ``s3://bucket/prefix/sha256/ab/cdef…``.

The bucket is the store of record; a local folder (the workspace's artifact folder) is a
content-addressed cache in front of it, so code that reads a blob right after storing it reads
a local file, and a blob is fetched once per machine. The cache can be deleted at any time.

- Writes hash the bytes into the cache first (the local store's protocol), then send them to the
  bucket: one ``PutObject`` up to ``part_size``, a multipart upload above it, one part in memory
  at a time. Every request carries the SHA-256 of its body (``ChecksumSHA256``), which the
  bucket checks, and the whole stream is hashed again while it is sent: a mismatch aborts the
  upload, so no wrong object ever appears under a digest. A multipart upload is invisible until
  it completes; one whose writer died is aborted by ``modelyard gc`` after the grace period.
- Storing content that is already in the bucket copies the object onto itself, which makes its
  ``LastModified`` current: the garbage collector keeps objects younger than its grace period.
- Reads stream the object into the cache and re-hash it; bytes that do not match their key's
  digest raise :class:`~modelyard.errors.CorruptArtifact` and never reach the cache.
- Settings come from the usual AWS variables (``AWS_ENDPOINT_URL``, ``AWS_REGION``,
  ``AWS_ACCESS_KEY_ID``…), then botocore's own chain (profiles, instance roles).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from modelyard.artifacts.cached import CachedArtifactStore
from modelyard.errors import (
    ArtifactError,
    ArtifactUnavailable,
    ConfigError,
    CorruptArtifact,
    NotFound,
)
from modelyard.hashing import CHUNK_SIZE, hex_of, is_digest

DEFAULT_PART_SIZE = 16 << 20  # 16 MiB: a multipart upload holds one part in memory
MAX_PARTS = 10_000  # S3's limit on the parts of one upload
PRESIGN_TTL_S = 3600
_AWS_VARS = (
    "AWS_ENDPOINT_URL",
    "AWS_ENDPOINT_URL_S3",
    "AWS_REGION",
    "AWS_DEFAULT_REGION",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_PROFILE",
)


@dataclass(frozen=True)
class S3Location:
    """A bucket and a key prefix (no leading or trailing slash; may be empty)."""

    bucket: str
    prefix: str

    @classmethod
    def parse(cls, url: str) -> S3Location:
        if not url.startswith("s3://"):
            raise ConfigError(f"artifact store URL {url!r}: only s3://bucket/prefix is supported")
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket or any(c in bucket for c in " \\?#"):
            raise ConfigError(f"artifact store URL {url!r} names no valid bucket")
        prefix = prefix.strip("/")
        if any(part in {".", ".."} for part in prefix.split("/")) or "//" in prefix:
            raise ConfigError(f"artifact store URL {url!r}: the prefix has an empty or dot part")
        return cls(bucket, prefix)

    def key(self, rest: str) -> str:
        return f"{self.prefix}/{rest}" if self.prefix else rest

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}".rstrip("/")


def aws_settings(environ: Mapping[str, str]) -> dict[str, str]:
    """The AWS variables of ``environ`` that configure the S3 client."""
    return {k: environ[k] for k in _AWS_VARS if environ.get(k)}


def part_size_for(size: int, part_size: int = DEFAULT_PART_SIZE) -> int:
    """The part size of a multipart upload of ``size`` bytes: at most 10,000 parts."""
    return max(part_size, -(-size // MAX_PARTS))


class S3ArtifactStore(CachedArtifactStore):
    """The bucket at ``url`` behind the local cache folder ``cache``."""

    def __init__(
        self,
        url: str,
        cache: Path,
        *,
        aws: Mapping[str, str] | None = None,
        part_size: int = DEFAULT_PART_SIZE,
        read_only: bool = False,
    ) -> None:
        super().__init__(cache)
        self.read_only = read_only
        self.location = S3Location.parse(url)
        self.url = str(self.location)
        self.aws = dict(aws or {})
        self.part_size = part_size
        self._client: Any = None

    def __repr__(self) -> str:
        return f"S3ArtifactStore({self.url!r}, cache={str(self.root)!r})"

    # -- the client ----------------------------------------------------------------------------
    @property
    def endpoint(self) -> str | None:
        return self.aws.get("AWS_ENDPOINT_URL_S3") or self.aws.get("AWS_ENDPOINT_URL")

    @property
    def s3(self) -> Any:
        """The boto3 S3 client, built on first use (boto3 is imported only then)."""
        if self._client is None:
            import boto3
            from botocore.config import Config

            session = boto3.session.Session(
                aws_access_key_id=self.aws.get("AWS_ACCESS_KEY_ID"),
                aws_secret_access_key=self.aws.get("AWS_SECRET_ACCESS_KEY"),
                aws_session_token=self.aws.get("AWS_SESSION_TOKEN"),
                region_name=self.aws.get("AWS_REGION") or self.aws.get("AWS_DEFAULT_REGION"),
                profile_name=self.aws.get("AWS_PROFILE"),
            )
            config = Config(
                connect_timeout=5,
                read_timeout=600,  # completing or copying a large object can take minutes
                retries={"max_attempts": 3, "mode": "standard"},
                signature_version="s3v4",
                s3={"addressing_style": "path"} if self.endpoint else {},
            )
            self._client = session.client("s3", endpoint_url=self.endpoint, config=config)
        return self._client

    @contextlib.contextmanager
    def bucket_errors(self, doing: str) -> Iterator[None]:
        """botocore's exceptions as one-line :class:`ArtifactError` naming the bucket."""
        from botocore.exceptions import BotoCoreError, ClientError
        from botocore.exceptions import ConnectionError as BotoConnectionError

        try:
            yield
        except ClientError as exc:
            err = exc.response.get("Error", {})
            raise ArtifactError(
                f"{doing} in {self.url}: the bucket answered {err.get('Code', '?')}: "
                f"{err.get('Message') or exc}"
            ) from None
        except BotoConnectionError as exc:
            where = f" at {self.endpoint}" if self.endpoint else ""
            raise ArtifactUnavailable(
                f"{doing}: cannot reach {self.url}{where} ({type(exc).__name__})"
            ) from None
        except BotoCoreError as exc:
            raise ArtifactError(f"{doing} in {self.url}: {exc}") from None

    # -- keys ----------------------------------------------------------------------------------
    def key(self, digest: str) -> str:
        if not is_digest(digest):
            raise ArtifactError(f"not a sha256 digest: {digest!r}")
        hexd = hex_of(digest)
        return self.location.key(f"sha256/{hexd[:2]}/{hexd[2:]}")

    def staging_key(self, digest: str, session: str) -> str:
        """Where a client's direct upload lands before the server has verified it."""
        return self.location.key(f"staging/{hex_of(digest)}/{session}")

    def head(self, digest: str) -> dict[str, Any] | None:
        """The object's metadata (``ContentLength``, ``LastModified``…), None if it is absent."""
        return self._head_key(self.key(digest))

    def _head_key(self, key: str) -> dict[str, Any] | None:
        from botocore.exceptions import ClientError

        with self.bucket_errors(f"looking up {key}"):
            try:
                head: dict[str, Any] = self.s3.head_object(Bucket=self.location.bucket, Key=key)
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in {"404", "NoSuchKey", "NotFound"}:
                    return None
                raise
        return head

    # -- writes: cache, then bucket -------------------------------------------------------------
    def upload(self, digest: str) -> None:
        """Send a cached blob to the bucket unless it is there (then refresh its age)."""
        if self.read_only:
            raise ArtifactError(f"artifact store {self.url} is read-only")
        if self.refresh(digest):
            return
        source = self.path(digest)
        size = source.stat().st_size
        with self.bucket_errors(f"storing {digest}"), source.open("rb") as f:
            if size <= self.part_size:
                self._put_single(f, digest)
            else:
                self._put_multipart(f, digest, part_size_for(size, self.part_size))

    def refresh(self, digest: str) -> bool:
        """True if the bucket holds ``digest``, its ``LastModified`` now made current."""
        if self.head(digest) is None:
            return False
        self.copy_within(self.key(digest), self.key(digest))
        return True

    def copy_within(self, source: str, dest: str) -> None:
        """A server-side copy (multipart above 5 GB); onto itself it renews ``LastModified``."""
        from boto3.s3.transfer import TransferConfig

        bucket = self.location.bucket
        with self.bucket_errors(f"copying {source}"):
            self.s3.copy(
                {"Bucket": bucket, "Key": source},
                bucket,
                dest,
                ExtraArgs={"MetadataDirective": "REPLACE", "Metadata": {"stored": _now()}},
                Config=TransferConfig(multipart_threshold=4 << 30, multipart_chunksize=1 << 30),
            )

    def _put_single(self, f: BinaryIO, digest: str) -> None:
        data = f.read()
        actual = f"sha256:{hashlib.sha256(data).hexdigest()}"
        if actual != digest:
            raise CorruptArtifact(digest, f"the cached blob hashes to {actual}; nothing stored")
        self.s3.put_object(
            Bucket=self.location.bucket,
            Key=self.key(digest),
            Body=data,
            ChecksumSHA256=_b64(hashlib.sha256(data).digest()),
        )

    def _put_multipart(self, f: BinaryIO, digest: str, part_size: int) -> None:
        """One part in memory at a time; aborted unless every byte hashed to ``digest``."""
        bucket, key = self.location.bucket, self.key(digest)
        upload = self.s3.create_multipart_upload(Bucket=bucket, Key=key, ChecksumAlgorithm="SHA256")
        upload_id = upload["UploadId"]
        whole = hashlib.sha256()
        parts = []
        try:
            number = 0
            while data := f.read(part_size):
                number += 1
                whole.update(data)
                checksum = _b64(hashlib.sha256(data).digest())
                answer = self.s3.upload_part(
                    Bucket=bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=data,
                    ChecksumSHA256=checksum,
                )
                parts.append(
                    {"PartNumber": number, "ETag": answer["ETag"], "ChecksumSHA256": checksum}
                )
            actual = f"sha256:{whole.hexdigest()}"
            if actual != digest:
                raise CorruptArtifact(digest, f"the cached blob hashes to {actual}; nothing stored")
            self.s3.complete_multipart_upload(
                Bucket=bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
        except BaseException:
            with contextlib.suppress(Exception):
                self.s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
            raise

    # -- reads: fill the cache from the bucket -------------------------------------------------
    def exists(self, digest: str) -> bool:
        return self.head(digest) is not None

    def size(self, digest: str) -> int:
        if self.cache.exists(digest):
            return self.cache.size(digest)
        head = self.head(digest)
        if head is None:
            raise NotFound(f"artifact {digest} is not in {self.url}")
        return int(head["ContentLength"])

    def download(self, digest: str) -> Path:
        """Stream the object into the cache, re-hashing it; only matching bytes are kept."""
        from botocore.exceptions import ClientError

        final = self.path(digest)
        h = hashlib.sha256()
        tmp = self.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=tmp, prefix="get-")
        try:
            with self.bucket_errors(f"reading {digest}"), os.fdopen(fd, "wb") as out:
                try:
                    answer = self.s3.get_object(Bucket=self.location.bucket, Key=self.key(digest))
                except ClientError as exc:
                    if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                        raise NotFound(f"artifact {digest} is not in {self.url}") from None
                    raise
                with contextlib.closing(answer["Body"]) as body:
                    for chunk in body.iter_chunks(CHUNK_SIZE):
                        h.update(chunk)
                        out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            actual = f"sha256:{h.hexdigest()}"
            if actual != digest:
                raise CorruptArtifact(digest, f"found {actual} at {self.url}/{self.key(digest)}")
            final.parent.mkdir(parents=True, exist_ok=True)
            os.chmod(tmp_name, 0o444)
            os.replace(tmp_name, final)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        return final

    def read_head(self, digest: str, limit: int) -> tuple[bytes, int] | None:
        """The first ``limit`` bytes of an object, unverified, and its size; None if absent
        (what the garbage collector needs to find manifests)."""
        from botocore.exceptions import ClientError

        with self.bucket_errors(f"reading {digest}"):
            try:
                answer = self.s3.get_object(
                    Bucket=self.location.bucket, Key=self.key(digest), Range=f"bytes=0-{limit - 1}"
                )
            except ClientError as exc:
                if exc.response.get("Error", {}).get("Code") in {"NoSuchKey", "404"}:
                    return None
                raise
            with contextlib.closing(answer["Body"]) as body:
                data = body.read()
        total = answer.get("ContentRange", "").rpartition("/")[2]
        return data, int(total) if total.isdigit() else len(data)

    # -- listing, for the garbage collector ----------------------------------------------------
    def objects(self, under: str = "sha256/") -> Iterator[tuple[str, int, float]]:
        """(key, size, LastModified as a timestamp) of every object under the prefix."""
        prefix = self.location.key(under)
        with self.bucket_errors(f"listing {prefix}"):
            pages = self.s3.get_paginator("list_objects_v2").paginate(
                Bucket=self.location.bucket, Prefix=prefix
            )
            for page in pages:
                for obj in page.get("Contents", []):
                    yield obj["Key"], int(obj["Size"]), _ts(obj["LastModified"])

    def digest_of(self, key: str) -> str | None:
        """The digest a content key stands for; None for any other key."""
        rest = key.removeprefix(self.location.key("sha256/"))
        fan, _, name = rest.partition("/")
        digest = f"sha256:{fan}{name}"
        return digest if len(fan) == 2 and is_digest(digest) else None

    def delete_key(self, key: str, *, unless_newer_than: float | None = None) -> bool:
        """Delete an object unless it changed after ``unless_newer_than`` (looked up again
        just before); True if it was deleted."""
        if unless_newer_than is not None:
            head = self._head_key(key)
            if head is None or _ts(head["LastModified"]) > unless_newer_than:
                return False
        with self.bucket_errors(f"deleting {key}"):
            self.s3.delete_object(Bucket=self.location.bucket, Key=key)
        return True

    def incomplete_uploads(self, older_than: float, *, abort: bool) -> tuple[int, int]:
        """The multipart uploads that were started, and last received a part, before
        ``older_than`` (a writer that died, a client that never finished): (count, bytes of
        their parts), each aborted when ``abort``. A long upload still sending parts is left
        alone."""
        bucket, count, size = self.location.bucket, 0, 0
        with self.bucket_errors("listing incomplete uploads"):
            pages = self.s3.get_paginator("list_multipart_uploads").paginate(
                Bucket=bucket, Prefix=self.location.key("")
            )
            for page in pages:
                for upload in page.get("Uploads", []):
                    key, upload_id = upload["Key"], upload["UploadId"]
                    if _ts(upload["Initiated"]) > older_than:
                        continue
                    parts = [
                        part
                        for listing in self.s3.get_paginator("list_parts").paginate(
                            Bucket=bucket, Key=key, UploadId=upload_id
                        )
                        for part in listing.get("Parts", [])
                    ]
                    if max((_ts(p["LastModified"]) for p in parts), default=0.0) > older_than:
                        continue
                    if abort:
                        self.s3.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
                    count, size = count + 1, size + sum(int(p["Size"]) for p in parts)
        return count, size

    # -- presigned URLs: clients of a team server move the bytes themselves --------------------
    def presign(self, method: str, params: dict[str, Any], ttl_s: int = PRESIGN_TTL_S) -> str:
        params = {"Bucket": self.location.bucket, **params}
        with self.bucket_errors("signing a URL"):
            url: str = self.s3.generate_presigned_url(method, Params=params, ExpiresIn=ttl_s)
        return url

    def drop_cached(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(digest).unlink()


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _ts(value: datetime) -> float:
    return value.timestamp()


def _now() -> str:
    return f"{time.time():.3f}"


__all__ = ["DEFAULT_PART_SIZE", "S3ArtifactStore", "S3Location", "aws_settings", "part_size_for"]
