"""What a run ran with: the code version (git) and the environment (exact package versions).

Both are captured when a run starts so that ``reproduce`` and the image builder can rebuild the
same conditions later. Capturing must never fail a run: a missing ``git`` binary, a folder that
is not a repository or a repository without commits all give ``None`` fields, not errors.

The package lock is stored as a JSON blob in the artifact store, so identical environments
share one blob (and one digest) across every run that used them.
"""

from __future__ import annotations

import functools
import getpass
import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from modelyard.errors import ArtifactError

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

LOCK_FORMAT = 1
_GIT_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class CodeVersion:
    """The git state of the code a run executed. ``dirty`` covers tracked files only, because
    only those are in ``git diff HEAD`` and can be restored from the stored diff."""

    commit: str | None
    dirty: bool | None
    diff_digest: str | None


@dataclass(frozen=True)
class Environment:
    """The interpreter and the exact installed distributions of a run."""

    python_version: str
    platform: str
    packages: Mapping[str, str]

    def requirements(self) -> list[str]:
        """``name==version`` lines, sorted, ready for ``pip install``."""
        return [f"{name}=={version}" for name, version in sorted(self.packages.items())]

    def to_bytes(self) -> bytes:
        """Canonical JSON (sorted keys, no whitespace variance) so equal environments hash
        equal."""
        doc = {
            "format": LOCK_FORMAT,
            "python": self.python_version,
            "platform": self.platform,
            "packages": dict(sorted(self.packages.items())),
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    @classmethod
    def from_bytes(cls, data: bytes, digest: str) -> Environment:
        try:
            doc = json.loads(data)
            if doc.get("format") != LOCK_FORMAT:
                raise ValueError(f"unknown lock format {doc.get('format')!r}")
            packages = doc["packages"]
            if not isinstance(packages, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in packages.items()
            ):
                raise ValueError("packages must map names to version strings")
            return cls(str(doc["python"]), str(doc["platform"]), packages)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ArtifactError(
                f"blob {digest} is not a modelyard environment lock: {exc}"
            ) from None


def python_version() -> str:
    return platform.python_version()


def current_environment() -> Environment:
    """The running interpreter's distributions, read from ``importlib.metadata``.

    When a name is installed twice on ``sys.path`` the first one wins, as it does for imports.
    Scanning every ``*.dist-info`` costs ~100 ms idle (seconds on a loaded machine), too much
    for each run of a pipeline, so the result is memoised per interpreter, ``sys.path`` and the
    modification times of its folders: installing or removing a package changes its folder's
    mtime and invalidates the memo. The memo lives in this process and in the user's cache
    folder (``~/.cache/modelyard/environments``), so the next command finds it too.
    """
    return _scan_distributions(_path_fingerprint())


def _path_fingerprint() -> tuple[tuple[str, int], ...]:
    stamps = []
    for entry in sys.path:
        try:
            stamps.append((entry, os.stat(entry or ".").st_mtime_ns))
        except OSError:
            stamps.append((entry, -1))
    return tuple(stamps)


@functools.lru_cache(maxsize=4)
def _scan_distributions(fingerprint: tuple[tuple[str, int], ...]) -> Environment:
    import hashlib

    key = json.dumps([sys.executable, python_version(), fingerprint]).encode()
    memo = _memo_dir() / f"{hashlib.sha256(key).hexdigest()[:32]}.json"
    try:
        return Environment.from_bytes(memo.read_bytes(), str(memo))
    except (OSError, ArtifactError):
        pass
    env = _read_distributions(fingerprint)
    try:
        memo.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo.with_name(f"{memo.name}.{os.getpid()}.tmp")
        tmp.write_bytes(env.to_bytes())
        os.replace(tmp, memo)
    except OSError:
        pass  # a read-only home: scanning each time still works
    return env


def _memo_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME")
    if not base:
        try:
            base = str(Path.home() / ".cache")
        except (RuntimeError, KeyError):  # no home folder: the memo is a file nobody can read
            return Path(os.devnull) / "modelyard-environments"
    return Path(base) / "modelyard" / "environments"


def _read_distributions(fingerprint: tuple[tuple[str, int], ...]) -> Environment:
    import importlib.metadata

    packages: dict[str, str] = {}
    for dist in importlib.metadata.distributions(path=[entry for entry, _ in fingerprint]):
        name = dist.metadata["Name"]
        if not name or not dist.version:
            continue  # broken metadata (half-uninstalled package): nothing installable
        packages.setdefault(name, dist.version)
    return Environment(
        python_version=python_version(),
        platform=f"{sys.platform}-{platform.machine()}",
        packages=MappingProxyType(dict(sorted(packages.items()))),
    )


def save_environment(ws: Workspace, env: Environment | None = None) -> str:
    """Store the lock (default: the current environment); returns its digest."""
    return ws.artifacts.put_bytes((env or current_environment()).to_bytes())


def load_environment(ws: Workspace, digest: str) -> Environment:
    """The environment lock a run recorded as ``environment_digest``."""
    return Environment.from_bytes(ws.artifacts.get_bytes(digest), digest)


def capture_code_version(folder: Path, ws: Workspace | None = None) -> CodeVersion:
    """The git commit of the repository containing ``folder``, whether tracked files differ
    from it and the digest of that difference. When ``ws`` is given the diff bytes are kept in
    its artifact store, so the exact working tree can be restored from commit + diff."""
    commit = _git(folder, "rev-parse", "--verify", "HEAD")
    if commit is None:
        return CodeVersion(None, None, None)
    diff = _git_bytes(folder, "diff", "HEAD", "--binary", "--no-color", "--no-ext-diff")
    if diff is None:
        return CodeVersion(commit.strip(), None, None)
    if not diff:
        return CodeVersion(commit.strip(), False, None)
    if ws is not None:
        digest = ws.artifacts.put_bytes(diff)
    else:
        from modelyard.hashing import digest_bytes

        digest = digest_bytes(diff)
    return CodeVersion(commit.strip(), True, digest)


def git_toplevel(folder: Path) -> Path | None:
    """The top folder of the git working tree holding ``folder``, or None."""
    top = _git(folder, "rev-parse", "--show-toplevel")
    return Path(top.strip()) if top and top.strip() else None


def host_name() -> str | None:
    try:
        return socket.gethostname() or None
    except OSError:
        return None


def user_name() -> str | None:
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):  # no passwd entry, e.g. in some containers
        return None


def _git(folder: Path, *args: str) -> str | None:
    out = _git_bytes(folder, *args)
    return None if out is None else out.decode("utf-8", "replace")


def _git_bytes(folder: Path, *args: str) -> bytes | None:
    # GIT_OPTIONAL_LOCKS=0: many concurrent runs must not fight over .git/index.lock just to
    # refresh the index's stat cache.
    env: dict[str, Any] = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "LC_ALL": "C"}
    try:
        result = subprocess.run(
            ["git", *args],
            cwd=folder,
            env=env,
            capture_output=True,
            timeout=_GIT_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):  # git missing, folder gone, hung
        return None
    if result.returncode != 0:
        return None
    return result.stdout
