"""Code version (git) and environment lock capture."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from modelyard.errors import ArtifactError
from modelyard.hashing import digest_bytes
from modelyard.tracking import (
    Environment,
    capture_code_version,
    current_environment,
    load_environment,
    save_environment,
    start_run,
)
from modelyard.workspace import Workspace

needs_git = pytest.mark.skipif(shutil.which("git") is None, reason="git is not installed")


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    _git(root, "init", "-q")
    (root / "train.py").write_text("print('v1')\n")
    _git(root, "add", "train.py")
    _git(root, "commit", "-q", "-m", "first")
    return root


@needs_git
def test_clean_repository(repo: Path) -> None:
    code = capture_code_version(repo)
    assert code.commit == _git(repo, "rev-parse", "HEAD")
    assert code.dirty is False
    assert code.diff_digest is None


@needs_git
def test_dirty_repository_keeps_the_diff(repo: Path, sqlite_workspace: Workspace) -> None:
    (repo / "train.py").write_text("print('v2')\n")
    (repo / "untracked.txt").write_text("not part of the diff\n")
    diff = subprocess.run(
        ["git", "diff", "HEAD", "--binary"], cwd=repo, check=True, capture_output=True
    ).stdout
    code = capture_code_version(repo, sqlite_workspace)
    assert code.dirty is True
    assert code.diff_digest == digest_bytes(diff)
    assert b"+print('v2')" in sqlite_workspace.artifacts.get_bytes(code.diff_digest)


@needs_git
def test_run_in_a_git_workspace_records_the_commit(
    repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MODELYARD_STORE_URL", raising=False)
    monkeypatch.delenv("MODELYARD_ARTIFACT_ROOT", raising=False)
    ws, _ = Workspace.init(repo / "project", environ={})
    with ws, start_run(workspace=ws) as run:
        pass
    with Workspace.at(repo / "project", environ={}) as ws:
        stored = ws.store.runs.get(run.id)
    assert stored.git_commit == _git(repo, "rev-parse", "HEAD")
    # modelyard.toml is new and untracked: untracked files do not make a run dirty
    assert stored.git_dirty is False


def test_not_a_repository_and_missing_git_give_none(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / "plain"
    folder.mkdir()
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    code = capture_code_version(folder)
    assert (code.commit, code.dirty, code.diff_digest) == (None, None, None)
    monkeypatch.setenv("PATH", str(tmp_path / "no-bin-here"))
    assert capture_code_version(folder).commit is None


def test_environment_lock_round_trip(sqlite_workspace: Workspace) -> None:
    env = current_environment()
    assert env.packages["click"] == __import__("importlib.metadata").metadata.version("click")
    digest = save_environment(sqlite_workspace, env)
    assert save_environment(sqlite_workspace, env) == digest  # deduplicated
    loaded = load_environment(sqlite_workspace, digest)
    assert loaded == env
    assert f"click=={env.packages['click']}" in loaded.requirements()
    names = [line.split("==")[0] for line in loaded.requirements()]
    assert names == sorted(names)


def test_a_blob_that_is_not_a_lock_is_refused(sqlite_workspace: Workspace) -> None:
    digest = sqlite_workspace.artifacts.put_bytes(b'{"format": 99}')
    with pytest.raises(ArtifactError, match="not a modelyard environment lock"):
        load_environment(sqlite_workspace, digest)
    fixed = Environment("3.11.0", "linux-x86_64", {"b": "2", "a": "1"})
    assert (
        fixed.to_bytes() == Environment("3.11.0", "linux-x86_64", {"a": "1", "b": "2"}).to_bytes()
    )


def test_the_environment_memo_follows_installs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The scan is remembered on disk (the next command reads it instead of every dist-info),
    and installing into a folder on sys.path is seen at once."""
    import sys

    from modelyard.tracking import environment

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.setattr(sys, "path", [*sys.path, str(site)])
    environment._scan_distributions.cache_clear()
    before = current_environment()
    assert "fastpipe-probe" not in before.packages
    assert list((tmp_path / "cache" / "modelyard" / "environments").glob("*.json"))
    environment._scan_distributions.cache_clear()  # a new process: read from the disk memo
    assert current_environment() == before

    info = site / "fastpipe_probe-1.2.dist-info"
    info.mkdir()  # what pip does: a new folder changes site's mtime
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: fastpipe-probe\nVersion: 1.2\n")
    os.utime(site, ns=(0, os.stat(site).st_mtime_ns + 1_000_000))
    environment._scan_distributions.cache_clear()
    assert current_environment().packages["fastpipe-probe"] == "1.2"
    environment._scan_distributions.cache_clear()
