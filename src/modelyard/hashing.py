"""Streaming SHA-256: every digest in modelyard is ``sha256:<64 hex>``.

Files are hashed in fixed-size chunks so memory stays flat whatever the file size.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable
from pathlib import Path

from modelyard.errors import InvalidValue

ALGORITHM = "sha256"
CHUNK_SIZE = 1 << 20
_DIGEST_RE = re.compile(r"^sha256:[0-9a-f]{64}\Z")


def is_digest(value: str) -> bool:
    return bool(_DIGEST_RE.fullmatch(value))


def hex_of(digest: str) -> str:
    """The hex part of a digest; raises InvalidValue (a ValueError) on anything else."""
    if not is_digest(digest):
        raise InvalidValue(f"not a sha256 digest: {digest!r}")
    return digest.split(":", 1)[1]


def digest_bytes(data: bytes) -> str:
    return f"{ALGORITHM}:{hashlib.sha256(data).hexdigest()}"


def digest_chunks(chunks: Iterable[bytes]) -> str:
    h = hashlib.sha256()
    for chunk in chunks:
        h.update(chunk)
    return f"{ALGORITHM}:{h.hexdigest()}"


def digest_file(path: Path, progress: Callable[[int], None] | None = None) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            h.update(chunk)
            if progress is not None:
                progress(len(chunk))
    return f"{ALGORITHM}:{h.hexdigest()}"


def short(digest: str, n: int = 12) -> str:
    return digest.split(":", 1)[-1][:n]
