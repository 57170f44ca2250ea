"""OCI images written without a Docker engine, bit for bit the same from the same inputs.

A layer is a gzip-compressed tar whose every byte is fixed by its content: entries in path
order, parents before children, every mtime :data:`LAYER_MTIME`, owners numeric with empty
names (``root``'s 0 unless a caller says otherwise), permissions 0644 / 0755 only, PAX headers
only where a path needs them, and a gzip header with neither a file name nor a time. Configs and
manifests are canonical JSON (sorted keys, no spaces), so their digests are stable too.

Blobs live in an OCI image layout (``oci-layout``, ``index.json``, ``blobs/sha256/<hex>``),
written temp file → fsync → rename and checked against their digest when read; any tool that
reads an image layout (``skopeo copy oci:DIR:REF``) reads it.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import tarfile
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from modelyard.errors import ImageError
from modelyard.hashing import digest_file

# 1980-01-01T00:00:00Z: the oldest time a zip entry can hold, the date modelyard gives every
# entry of a reproducible archive (model files, wheels, layers alike).
LAYER_MTIME = 315532800

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
INDEX = "application/vnd.oci.image.index.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
LAYER_TAR = "application/vnd.oci.image.layer.v1.tar"
EMPTY = "application/vnd.oci.empty.v1+json"
EMPTY_JSON = b"{}"
DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
REF_NAME = "org.opencontainers.image.ref.name"


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no insignificant spaces: one value, one byte string, one digest."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def sha256_digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _hex(digest: str) -> str:
    algo, _, hexpart = digest.partition(":")
    if algo != "sha256" or len(hexpart) != 64 or any(c not in "0123456789abcdef" for c in hexpart):
        raise ImageError(f"not a sha256 digest: {digest!r}")
    return hexpart


@dataclass(frozen=True)
class Descriptor:
    """What points at a blob: its media type, digest and size (plus optional fields)."""

    media_type: str
    digest: str
    size: int
    annotations: Mapping[str, str] = field(default_factory=dict)
    artifact_type: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "mediaType": self.media_type,
            "digest": self.digest,
            "size": self.size,
        }
        if self.annotations:
            out["annotations"] = dict(self.annotations)
        if self.artifact_type:
            out["artifactType"] = self.artifact_type
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Descriptor:
        try:
            return cls(
                media_type=str(data["mediaType"]),
                digest=str(data["digest"]),
                size=int(data["size"]),
                annotations=dict(data.get("annotations") or {}),
                artifact_type=data.get("artifactType"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ImageError(f"malformed descriptor {dict(data)!r}: {exc}") from exc


@dataclass(frozen=True)
class Layer:
    """A written layer: the compressed blob's descriptor and its uncompressed ``diff_id``."""

    descriptor: Descriptor
    diff_id: str
    uncompressed_size: int

    @property
    def digest(self) -> str:
        return self.descriptor.digest


class ImageLayout:
    """An OCI image layout folder: content-addressed blobs and an ``index.json`` of names."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def init(self) -> ImageLayout:
        (self.root / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
        marker = self.root / "oci-layout"
        if not marker.exists():
            _atomic_write(marker, canonical_json({"imageLayoutVersion": "1.0.0"}))
        if not (self.root / "index.json").exists():
            _atomic_write(self.root / "index.json", self._index_bytes([]))
        return self

    def blob_path(self, digest: str) -> Path:
        return self.root / "blobs" / "sha256" / _hex(digest)

    def has(self, digest: str) -> bool:
        return self.blob_path(digest).is_file()

    def put_bytes(self, data: bytes) -> str:
        digest = sha256_digest(data)
        if not self.has(digest):
            _atomic_write(self.blob_path(digest), data)
        return digest

    def adopt(self, tmp: Path, digest: str) -> None:
        """Move a finished temp file (in this layout's folder) into place as ``digest``."""
        if self.has(digest):
            tmp.unlink()
        else:
            tmp.replace(self.blob_path(digest))

    def temp_file(self) -> tuple[IO[bytes], Path]:
        fd, name = tempfile.mkstemp(prefix=".tmp-", dir=self.root / "blobs" / "sha256")
        return os.fdopen(fd, "wb"), Path(name)

    def get_bytes(self, digest: str) -> bytes:
        """The blob's bytes, re-hashed: a blob changed on disk is an error, never returned."""
        try:
            data = self.blob_path(digest).read_bytes()
        except FileNotFoundError:
            raise ImageError(f"blob {digest} is not in the image layout {self.root}") from None
        if sha256_digest(data) != digest:
            raise ImageError(f"blob {digest} in {self.root} does not match its digest")
        return data

    def get_json(self, digest: str) -> dict[str, Any]:
        value = json.loads(self.get_bytes(digest))
        if not isinstance(value, dict):
            raise ImageError(f"blob {digest} is not a JSON object")
        return value

    def verify_file(self, digest: str) -> Path:
        """The blob's path once its content was hashed again (large layers, read in chunks)."""
        path = self.blob_path(digest)
        if not path.is_file():
            raise ImageError(f"blob {digest} is not in the image layout {self.root}")
        h = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
        if "sha256:" + h.hexdigest() != digest:
            raise ImageError(f"blob {digest} in {self.root} does not match its digest")
        return path

    # -- names ----------------------------------------------------------------------------------
    def manifests(self) -> list[Descriptor]:
        data = json.loads((self.root / "index.json").read_bytes())
        return [Descriptor.from_json(m) for m in data.get("manifests") or []]

    def tag(self, name: str, manifest: Descriptor) -> None:
        """Point ``name`` (``org.opencontainers.image.ref.name``) at ``manifest``."""
        kept = [m for m in self.manifests() if m.annotations.get(REF_NAME) != name]
        kept.append(
            Descriptor(manifest.media_type, manifest.digest, manifest.size, {REF_NAME: name})
        )
        _atomic_write(self.root / "index.json", self._index_bytes(kept))

    def find(self, name: str) -> Descriptor | None:
        for m in self.manifests():
            if m.annotations.get(REF_NAME) == name:
                return m
        return None

    @staticmethod
    def _index_bytes(manifests: Iterable[Descriptor]) -> bytes:
        ordered = sorted(manifests, key=lambda m: m.annotations.get(REF_NAME, ""))
        return canonical_json(
            {
                "schemaVersion": 2,
                "mediaType": INDEX,
                "manifests": [m.to_json() for m in ordered],
            }
        )


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=".tmp-", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(name, path)
    except BaseException:
        Path(name).unlink(missing_ok=True)
        raise


# -- layers --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Entry:
    """One tar entry: a folder, a file (bytes, or a host file read when written) or a symlink."""

    path: str  # inside the image, no leading '/'
    kind: str  # "dir" | "file" | "symlink" | "hardlink" (target: an earlier entry's path)
    mode: int = 0o644
    data: bytes | None = None
    source: Path | None = None
    target: str = ""  # a symlink's target
    uid: int = 0
    gid: int = 0


def dir_entry(path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> Entry:
    return Entry(path.strip("/"), "dir", mode, uid=uid, gid=gid)


def file_entry(path: str, data: bytes | Path, mode: int = 0o644) -> Entry:
    if isinstance(data, Path):
        return Entry(path.strip("/"), "file", mode, source=data)
    return Entry(path.strip("/"), "file", mode, data=data)


def symlink_entry(path: str, target: str) -> Entry:
    return Entry(path.strip("/"), "symlink", 0o777, target=target)


def with_parents(entries: Iterable[Entry]) -> list[Entry]:
    """``entries`` plus a root-owned 0755 folder entry for every parent none of them names."""
    by_path = {e.path: e for e in entries}
    for path in list(by_path):
        parts = path.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            by_path.setdefault(parent, dir_entry(parent))
    return list(by_path.values())


def tree_entries(root: Path, prefix: str) -> list[Entry]:
    """Every folder, file and symlink under host folder ``root`` as entries under ``prefix``:
    files 0755 when their owner may execute them, else 0644; folders 0755."""
    out = [dir_entry(prefix)]
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        here = Path(dirpath)
        rel = here.relative_to(root).as_posix()
        base = prefix if rel == "." else f"{prefix}/{rel}"
        for name in [*dirnames, *filenames]:
            path = here / name
            image_path = f"{base}/{name}"
            if path.is_symlink():
                out.append(symlink_entry(image_path, os.readlink(path)))
            elif path.is_dir():
                out.append(dir_entry(image_path))
            elif path.is_file():
                mode = 0o755 if path.stat().st_mode & 0o100 else 0o644
                out.append(file_entry(image_path, path, mode))
    return out


class _HashingWriter:
    """A write-only file object that hashes and counts what passes through it."""

    def __init__(self, inner: IO[bytes]) -> None:
        self.inner = inner
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.inner.write(data)

    def flush(self) -> None:
        self.inner.flush()


def write_layer(layout: ImageLayout, entries: Iterable[Entry], *, level: int = 6) -> Layer:
    """Write ``entries`` (parents added, sorted by path) as a reproducible gzip tar blob.
    A large file identical to an earlier one becomes a hard link to it (wheels cannot hold
    links, so vendored libraries come in copies)."""
    ordered = _hardlink_copies(sorted(with_parents(entries), key=lambda e: e.path.split("/")))
    raw, tmp = layout.temp_file()
    try:
        with raw:
            gz_hash = _HashingWriter(raw)
            # filename "" and mtime 0: the gzip header names no file and no time.
            with gzip.GzipFile(
                filename="",
                mode="wb",
                fileobj=gz_hash,
                compresslevel=level,
                mtime=0,
            ) as gz:
                tar_hash = _HashingWriter(gz)  # type: ignore[arg-type]
                with tarfile.open(
                    fileobj=tar_hash,
                    mode="w|",
                    format=tarfile.PAX_FORMAT,  # type: ignore[call-overload]
                    encoding="utf-8",
                ) as tar:
                    for entry in ordered:
                        _add(tar, entry)
            raw.flush()
            os.fsync(raw.fileno())
        digest = "sha256:" + gz_hash.sha.hexdigest()
        layout.adopt(tmp, digest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Layer(
        descriptor=Descriptor(LAYER_GZIP, digest, gz_hash.size),
        diff_id="sha256:" + tar_hash.sha.hexdigest(),
        uncompressed_size=tar_hash.size,
    )


DEDUPE_MIN_BYTES = 256 << 10


def _hardlink_copies(ordered: list[Entry]) -> list[Entry]:
    sizes: dict[int, list[int]] = {}
    for i, entry in enumerate(ordered):
        if entry.kind == "file" and entry.source is not None:
            size = entry.source.stat().st_size
            if size >= DEDUPE_MIN_BYTES:
                sizes.setdefault(size, []).append(i)
    out = list(ordered)
    for indexes in sizes.values():
        if len(indexes) < 2:
            continue
        first: dict[tuple[str, int], str] = {}
        for i in indexes:
            entry = ordered[i]
            assert entry.source is not None
            key = (digest_file(entry.source), entry.mode)
            if key in first:
                out[i] = Entry(
                    entry.path,
                    "hardlink",
                    entry.mode,
                    target=first[key],
                    uid=entry.uid,
                    gid=entry.gid,
                )
            else:
                first[key] = entry.path
    return out


def _add(tar: tarfile.TarFile, entry: Entry) -> None:
    info = tarfile.TarInfo(entry.path + ("/" if entry.kind == "dir" else ""))
    info.mtime = LAYER_MTIME
    info.uid, info.gid = entry.uid, entry.gid
    info.uname = info.gname = ""
    info.mode = entry.mode
    if entry.kind == "dir":
        info.type = tarfile.DIRTYPE
        tar.addfile(info)
    elif entry.kind == "symlink":
        info.type = tarfile.SYMTYPE
        info.linkname = entry.target
        tar.addfile(info)
    elif entry.kind == "hardlink":
        info.type = tarfile.LNKTYPE
        info.linkname = entry.target
        tar.addfile(info)
    elif entry.data is not None:
        info.size = len(entry.data)
        import io

        tar.addfile(info, io.BytesIO(entry.data))
    else:
        assert entry.source is not None
        with entry.source.open("rb") as fh:
            info.size = os.fstat(fh.fileno()).st_size
            tar.addfile(info, fh)


def read_layer_files(blob: Path, wanted: Mapping[str, int]) -> dict[str, bytes | None]:
    """From one layer, the content of each path in ``wanted`` (``{path: max bytes}``) that it
    holds, None for one it deletes (a whiteout); paths it does not touch are left out."""
    found: dict[str, bytes | None] = {}
    with open_layer(blob) as fh, tarfile.open(fileobj=fh, mode="r|") as tar:
        for info in tar:
            name = _clean(info.name)
            head, _, base = name.rpartition("/")
            if base.startswith(".wh.") and base != ".wh..wh..opq":
                deleted = f"{head}/{base[4:]}" if head else base[4:]
                if deleted in wanted:
                    found[deleted] = None
                continue
            if name in wanted and info.isfile():
                if info.size > wanted[name]:
                    raise ImageError(f"{name} in layer {blob.name} is over {wanted[name]} bytes")
                extracted = tar.extractfile(info)
                found[name] = extracted.read() if extracted is not None else b""
            elif name in wanted and info.issym():
                found[name] = ("->" + info.linkname).encode()
    return found


def _clean(name: str) -> str:
    while name.startswith(("./", "/")):
        name = name[1:] if name.startswith("/") else name[2:]
    return name.rstrip("/")


def open_layer(path: Path) -> IO[bytes]:
    """A layer blob opened for reading its tar: gunzipped when it is gzip, else as it is."""
    with path.open("rb") as probe:
        gzipped = probe.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gzipped else path.open("rb")  # type: ignore[return-value]
