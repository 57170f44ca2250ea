"""The code a run executed, checked out clean: ``git worktree add --detach`` of the recorded
commit in a temporary folder, plus the run's uncommitted changes when the caller hands over a
patch whose digest is the recorded one. Removed (``git worktree remove``) afterwards.

Hooks never run (``core.hooksPath`` is emptied): checking out a commit must not execute code
from the repository before the user asked for it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

_TIMEOUT_S = 300.0


class GitFailed(Exception):
    """A git command failed; the message is git's own last lines."""


def git(folder: Path, *args: str) -> str:
    env = {**os.environ, "LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0"}
    try:
        done = subprocess.run(
            ["git", "-c", f"core.hooksPath={os.devnull}", *args],
            cwd=folder,
            env=env,
            capture_output=True,
            text=True,
            timeout=_TIMEOUT_S,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise GitFailed(f"git {args[0]} could not run: {exc}") from None
    if done.returncode != 0:
        lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
        raise GitFailed(" | ".join(lines[-3:]) or f"git {args[0]} exited {done.returncode}")
    return done.stdout


def toplevel(folder: Path) -> Path | None:
    try:
        return Path(git(folder, "rev-parse", "--show-toplevel").strip()).resolve()
    except GitFailed:
        return None


def has_commit(repo: Path, commit: str) -> bool:
    try:
        git(repo, "cat-file", "-e", f"{commit}^{{commit}}")
    except GitFailed:
        return False
    return True


@contextmanager
def checkout(repo: Path, commit: str, dest: Path, patch: Path | None = None) -> Iterator[Path]:
    """A clean working tree of ``commit`` at ``dest`` (``patch`` applied with ``git apply``)."""
    git(repo, "worktree", "add", "--detach", "--quiet", str(dest), commit)
    try:
        if patch is not None:
            git(dest, "apply", "--binary", "--whitespace=nowarn", str(patch.resolve()))
        yield dest
    finally:
        try:
            git(repo, "worktree", "remove", "--force", str(dest))
        except GitFailed:
            shutil.rmtree(dest, ignore_errors=True)
            with suppress(GitFailed):
                git(repo, "worktree", "prune")
