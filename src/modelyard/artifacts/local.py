"""Content-addressed blobs in a local folder: ``<root>/sha256/ab/cdef…``.

Writes go to a temporary file in the same filesystem, are fsynced, then renamed into place, so a
crash never leaves a partial blob under its final name. Reads re-hash before returning bytes.

Storing content that is already there refreshes the blob's modification time: the garbage
collector (:mod:`modelyard.artifacts.gc`) spares blobs younger than its grace period, and a
writer records its reference only after storing, so the clock must start at the last store.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from pathlib import Path
from typing import BinaryIO

from modelyard.artifacts.base import ArtifactStore, Progress
from modelyard.errors import ArtifactError, CorruptArtifact, NotFound
from modelyard.hashing import CHUNK_SIZE, digest_file, hex_of, is_digest


class LocalArtifactStore(ArtifactStore):
    """The blobs of one folder (``<root>/sha256/ab/cdef…``); ``read_only`` refuses writes."""

    def __init__(self, root: Path, *, read_only: bool = False) -> None:
        self.root = root
        self.read_only = read_only

    def __repr__(self) -> str:
        return f"LocalArtifactStore({str(self.root)!r})"

    # -- paths ---------------------------------------------------------------------------------
    def path(self, digest: str) -> Path:
        if not is_digest(digest):
            raise ArtifactError(f"not a sha256 digest: {digest!r}")
        hexd = hex_of(digest)
        return self.root / "sha256" / hexd[:2] / hexd[2:]

    def _tmp_dir(self) -> Path:
        tmp = self.root / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        return tmp

    def _check_writable(self) -> None:
        if self.read_only:
            raise ArtifactError(f"artifact store {self.root} is read-only")

    # -- writes --------------------------------------------------------------------------------
    def put_file(self, path: Path, progress: Progress | None = None, *, link: bool = False) -> str:
        """Hash the file in one streaming pass (memory stays at one chunk) while the kernel
        copies it (``copy_file_range``: no second trip through this process).

        ``link``: share the file's blocks instead, by a reflink (copy-on-write, safe) where
        the filesystem has them, else by a hard link when the store is on the same filesystem
        (the blob then *is* the file: modifying it in place later corrupts the blob, which
        reads detect). Otherwise, and whenever linking fails, the bytes are copied."""
        self._check_writable()
        h = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp_dir(), prefix="put-")
        try:
            with os.fdopen(fd, "wb") as out, path.open("rb", buffering=0) as src:
                before = _signature(os.fstat(src.fileno()))
                shared = link and _reflink(src.fileno(), out.fileno())
                copy = _Copier(src.fileno(), out.fileno()) if not shared else None
                buffer = bytearray(CHUNK_SIZE)
                view = memoryview(buffer)
                while n := src.readinto(buffer):
                    h.update(view[:n])
                    if copy is not None:
                        copy.chunk(view[:n])
                    if progress is not None:
                        progress(n)
                out.flush()
                os.fsync(out.fileno())
                changed = _signature(os.fstat(src.fileno())) != before
            # The kernel copied from the file after this process read it: if the file changed
            # meanwhile, the copy is what counts, and its own digest names it.
            digest = digest_file(Path(tmp_name)) if changed else f"sha256:{h.hexdigest()}"
            if link and not changed and not shared and self._hard_link(path, digest):
                os.unlink(tmp_name)  # the copy was not needed after all
                return digest
            return self._commit(tmp_name, digest)
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            self._full(exc, str(path))
            raise

    def _hard_link(self, path: Path, digest: str) -> bool:
        final = self.path(digest)
        if _refresh(final):
            return True
        final.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(path, final)
        except OSError:  # another filesystem, or links not allowed: keep the copy
            return False
        _fsync_dir(final.parent)
        return True

    def put_bytes(self, data: bytes) -> str:
        self._check_writable()
        digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
        if _refresh(self.path(digest)):
            return digest
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp_dir(), prefix="put-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            return self._commit(tmp_name, digest)
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            self._full(exc, f"{len(data)} bytes")
            raise

    def adopt(self, part: Path, digest: str) -> None:
        """Move ``part``, a file already hashed to ``digest`` on this filesystem, into the store
        (a verified upload the server received)."""
        self._check_writable()
        self._commit(str(part), digest)

    def _full(self, exc: BaseException, what: str) -> None:
        """A full disk (or quota) as one clear error; the temporary file is already gone."""
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise ArtifactError(
                f"cannot store {what}: the artifact store {self.root} is out of space "
                f"({exc.strerror}); nothing was stored"
            ) from exc

    def _commit(self, tmp_name: str, digest: str) -> str:
        final = self.path(digest)
        if _refresh(final):  # deduplicated: identical content is already stored
            os.unlink(tmp_name)
            return digest
        final.parent.mkdir(parents=True, exist_ok=True)
        os.chmod(tmp_name, 0o444)
        os.replace(tmp_name, final)
        _fsync_dir(final.parent)  # the rename itself survives a power loss, before any row
        return digest

    # -- reads ---------------------------------------------------------------------------------
    def exists(self, digest: str) -> bool:
        return self.path(digest).is_file()

    def size(self, digest: str) -> int:
        return self._existing(digest).stat().st_size

    def _existing(self, digest: str) -> Path:
        path = self.path(digest)
        if not path.is_file():
            raise NotFound(f"artifact {digest} is not in the artifact store {self.root}")
        return path

    def local_path(self, digest: str) -> Path:
        return self._existing(digest)

    def verify(self, digest: str) -> Path:
        path = self._existing(digest)
        actual = digest_file(path)
        if actual != digest:
            raise CorruptArtifact(digest, f"found {actual} at {path}")
        return path

    def get_bytes(self, digest: str) -> bytes:
        data = self._existing(digest).read_bytes()
        actual = f"sha256:{hashlib.sha256(data).hexdigest()}"
        if actual != digest:
            raise CorruptArtifact(digest, f"found {actual}")
        return data

    def open(self, digest: str) -> BinaryIO:
        return self.verify(digest).open("rb")

    def export_file(self, digest: str, dest: Path, mode: int | None = None) -> None:
        src = self._existing(digest)
        dest.parent.mkdir(parents=True, exist_ok=True)
        h = hashlib.sha256()
        fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.")
        try:
            with os.fdopen(fd, "wb") as out, src.open("rb") as f:
                while chunk := f.read(CHUNK_SIZE):
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if f"sha256:{h.hexdigest()}" != digest:
                raise CorruptArtifact(digest, f"found sha256:{h.hexdigest()}")
            os.chmod(tmp_name, mode if mode is not None else 0o644)
            os.replace(tmp_name, dest)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise


def _refresh(blob: Path) -> bool:
    """True if ``blob`` is stored, its modification time now made current. False if it is not
    (or the garbage collector took it a moment ago: then the caller writes it again)."""
    try:
        os.utime(blob)
    except FileNotFoundError:
        return False
    except OSError:  # a read-only folder or someone else's blob: it cannot be collected here
        return blob.is_file()
    return True


def _signature(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_size, st.st_mtime_ns, st.st_ctime_ns)


_FICLONE = 0x40049409  # linux/fs.h: share the extents of one file with another


def _reflink(src: int, dst: int) -> bool:
    """Make ``dst`` a copy-on-write clone of ``src`` (Btrfs, XFS, ...); False where the
    filesystem cannot."""
    import fcntl

    try:
        fcntl.ioctl(dst, _FICLONE, src)
    except OSError:
        return False
    return True


class _Copier:
    """Copies the chunks just hashed from ``src`` to ``dst`` inside the kernel
    (``copy_file_range``, the pages are still cached), writing them from here where the kernel
    cannot (other filesystems, old kernels)."""

    def __init__(self, src: int, dst: int) -> None:
        self.src, self.dst, self.offset = src, dst, 0
        self.in_kernel = hasattr(os, "copy_file_range")

    def chunk(self, data: memoryview) -> None:
        n = len(data)
        done = 0
        if self.in_kernel:
            try:
                while done < n:
                    copied = os.copy_file_range(
                        self.src, self.dst, n - done, self.offset + done, self.offset + done
                    )
                    if copied == 0:
                        break  # the source shrank under us: the hash covers what was read
                    done += copied
            except OSError as exc:
                if exc.errno not in (errno.EXDEV, errno.ENOSYS, errno.EOPNOTSUPP, errno.EINVAL):
                    raise
                self.in_kernel = False
        while done < n:
            done += os.pwrite(self.dst, data[done:], self.offset + done)
        self.offset += n


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
