"""The digest of what a step reads from outside the pipeline (``@step(reads=...)``).

A step that snapshots ``data/incoming/*.csv`` or scores with ``churn@production`` depends on
more than its inputs and parameters. Declaring what it reads puts the state of those things in
its cache key, so the step is skipped while they are unchanged and runs again as soon as one
changes: a file's content, a file appearing or going away, a new dataset version, an alias
moving to another model version.

File digests are remembered by (path, size, modification time, inode, change time) in the
workspace's state folder, as DVC and git do, so an unchanged 1 GB file is not read again on
every run; anything that rewrites the file changes its change time and so its digest is taken
again.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import stat
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidParameter, NotFound
from modelyard.hashing import digest_file
from modelyard.pipeline.step import Read

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

ABSENT = "absent"
_MEMO_FILE = "file-digests.json"
_MEMO_LIMIT = 20_000  # entries kept: old ones go first


def fill(item: str, params: Mapping[str, Any]) -> str:
    """``{param}`` in a read item replaced by the parameter's value."""
    try:
        return item.format_map({k: v for k, v in params.items()})
    except (KeyError, IndexError, ValueError) as exc:
        raise InvalidParameter(
            f"cannot fill in {item!r} from the step's parameters: {exc}"
        ) from None


def read_digests(
    ws: Workspace, reads: tuple[Read, ...], params: Mapping[str, Any]
) -> dict[str, str]:
    """``{"files:data/*.csv": "sha256:…", "models:churn@production": "churn@3 sha256:…"}``."""
    out: dict[str, str] = {}
    memo = _FileMemo(ws.state_dir / "cache" / _MEMO_FILE)
    for read in reads:
        for item in read.items:
            text = fill(item, params)
            label = f"{read.kind}:{text}"
            if read.kind == "files":
                out[label] = _files_digest(ws.root, text, memo)
            elif read.kind == "datasets":
                out[label] = _dataset_state(ws, text)
            else:
                out[label] = _model_state(ws, text)
    memo.save()
    return out


def _files_digest(root: Path, pattern: str, memo: _FileMemo) -> str:
    import hashlib

    base = Path(pattern) if Path(pattern).is_absolute() else root / pattern
    h = hashlib.sha256()
    found = 0
    for path in _matches(base):
        found += 1
        rel = os.path.relpath(path, root)
        h.update(rel.encode("utf-8", "surrogateescape") + b"\0")
        h.update(memo.digest(path).encode() + b"\0")
    return "sha256:" + h.hexdigest() if found else ABSENT


def _matches(base: Path) -> Iterator[Path]:
    """Regular files matching a glob; a folder stands for every file under it."""
    for hit in sorted(glob.glob(str(base), recursive=True)):
        path = Path(hit)
        if path.is_dir():
            for dirpath, dirnames, filenames in os.walk(path):
                dirnames.sort()
                for name in sorted(filenames):
                    p = Path(dirpath) / name
                    if p.is_file():
                        yield p
        elif path.is_file():
            yield path


def _dataset_state(ws: Workspace, ref: str) -> str:
    from modelyard.tracking import resolve_dataset_version

    try:
        version = resolve_dataset_version(ws, ref)
    except NotFound:
        return ABSENT
    return f"{version.ref} {version.digest}"


def _model_state(ws: Workspace, ref: str) -> str:
    from modelyard.refs import Ref

    parsed = Ref.parse(ref, kind="model reference")
    try:
        version = ws.store.models.get_version(
            parsed.name, parsed.version, digest=parsed.digest, alias=parsed.alias
        )
    except NotFound:
        return ABSENT
    return f"{version.ref} {version.digest} {version.status}"


class _FileMemo:
    """Content digests of files by their stat signature, kept between runs."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.entries: dict[str, list[Any]] = {}
        self.changed = False
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(path.read_text(encoding="utf-8"))
            if isinstance(loaded, dict):
                self.entries = loaded

    def digest(self, path: Path) -> str:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            return ABSENT
        signature = [st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns]
        key = str(path.resolve())
        known = self.entries.get(key)
        if isinstance(known, list) and len(known) == 2 and known[0] == signature:
            return str(known[1])
        digest = digest_file(path)
        # A file written within the clock's resolution of being hashed could change again
        # without its signature changing: remember only files that have settled.
        if _settled(st):
            self.entries.pop(key, None)
            self.entries[key] = [signature, digest]
            self.changed = True
        return digest

    def save(self) -> None:
        if not self.changed:
            return
        keep = dict(list(self.entries.items())[-_MEMO_LIMIT:])
        with contextlib.suppress(OSError):
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(keep), encoding="utf-8")
            os.replace(tmp, self.path)


def _settled(st: os.stat_result) -> bool:
    """True when the file was last changed more than two seconds ago."""
    import time

    return time.time_ns() - max(st.st_mtime_ns, st.st_ctime_ns) > 2_000_000_000
