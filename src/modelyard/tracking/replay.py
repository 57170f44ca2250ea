"""What a run re-executed by ``modelyard reproduce`` records, and how a plain script run records
the command that started it.

A replay is made current with :func:`replaying` (a :class:`~contextvars.ContextVar`, never
``os.environ``) around the re-executed code, in the process ``reproduce`` starts for it. Every
run started inside then

- captures its git state from the replay's code folder (the clean temporary worktree), not from
  the workspace folder, so the new run records the commit (and patch) it really ran;
- reads the recorded dataset versions: a reference without a version (``iris``,
  ``iris@latest``) resolves to the version the original run read, not to a newer one;
- is tagged ``modelyard.reproduces=<original run id>`` and listed in :attr:`Replay.started`.

A top-level run of a script (``python train.py --fast`` or ``python -m pkg.train``) records
its command in the tag ``modelyard.source`` — the script's path relative to the repository's
top folder, the arguments and the working folder — so ``reproduce`` can run it again.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SOURCE_TAG = "modelyard.source"
REPRODUCES_TAG = "modelyard.reproduces"
_MAX_SOURCE = 4000  # a command line longer than this is not recorded (it would not fit a tag)


@dataclass(frozen=True)
class Replay:
    of_run: str
    code_folder: Path | None = None
    datasets: Mapping[str, str] = field(default_factory=dict)  # name -> "name@N" it read
    started: list[str] = field(default_factory=list)

    def pin(self, ref: str) -> str:
        """The recorded version for a reference that names no version, else ``ref``."""
        name, _, version = ref.partition("@")
        if version in ("", "latest") and name in self.datasets:
            return self.datasets[name]
        return ref


_REPLAY: ContextVar[Replay | None] = ContextVar("modelyard_replay", default=None)


@contextmanager
def replaying(replay: Replay) -> Iterator[Replay]:
    token = _REPLAY.set(replay)
    try:
        yield replay
    finally:
        _REPLAY.reset(token)


def current_replay() -> Replay | None:
    return _REPLAY.get()


@dataclass(frozen=True)
class Source:
    """How a script run was started, relative to the repository's top folder."""

    script: str | None  # "train.py" for ``python train.py``
    module: str | None  # "pkg.train" for ``python -m pkg.train``
    args: tuple[str, ...]
    cwd: str  # the working folder, relative to the top folder ("." for the top itself)

    def to_json(self) -> str:
        doc = {"script": self.script, "module": self.module, "args": list(self.args)}
        return json.dumps({**doc, "cwd": self.cwd}, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> Source | None:
        try:
            doc: Any = json.loads(text)
            args = doc["args"]
            if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
                return None
            script, module, cwd = doc.get("script"), doc.get("module"), doc["cwd"]
            if not isinstance(cwd, str) or not (isinstance(script, str) or isinstance(module, str)):
                return None
            return cls(script, module, tuple(args), cwd)
        except (ValueError, KeyError, TypeError):
            return None


def capture_source(toplevel: Path, cwd: Path | None = None) -> Source | None:
    """The command of this process when ``__main__`` is a file inside ``toplevel``, else None
    (an interactive session, a notebook, a test runner outside the repository)."""
    main = sys.modules.get("__main__")
    path = getattr(main, "__file__", None)
    if not isinstance(path, str):
        return None
    top = toplevel.resolve()
    try:
        rel = Path(path).resolve().relative_to(top)
        where = (cwd or Path.cwd()).resolve().relative_to(top)
    except (ValueError, OSError):
        return None
    spec = getattr(main, "__spec__", None)
    module = getattr(spec, "name", None)
    if isinstance(module, str) and module != "__main__":
        found = Source(
            None, module.removesuffix(".__main__"), tuple(sys.argv[1:]), where.as_posix()
        )
    else:
        found = Source(rel.as_posix(), None, tuple(sys.argv[1:]), where.as_posix())
    return found if len(found.to_json()) <= _MAX_SOURCE else None
