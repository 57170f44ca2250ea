"""Uploads are capped (announced size, Content-Length and streamed bytes) and their stale parts
are collected by ``modelyard gc`` and when the server starts."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from conftest_remote import RunningServer, start_server
from modelyard.cli.main import cli
from modelyard.server import ServerLimits
from modelyard.server.launch import collect_stale_uploads
from modelyard.workspace import Workspace

CAP = 1 << 20


@pytest.fixture
def capped(sqlite_workspace: Workspace) -> Iterator[RunningServer]:
    running = start_server(sqlite_workspace, limits=ServerLimits(max_upload_bytes=CAP))
    yield running
    running.stop()


def _put(
    running: RunningServer, digest: str, size: int, content: object, **headers: str
) -> httpx.Response:
    return httpx.put(
        f"{running.url}/api/v1/uploads/{digest}",
        params={"size": size},
        content=content,  # type: ignore[arg-type]
        headers={"Authorization": f"Bearer {running.admin_token}", **headers},
        timeout=30,
    )


def test_an_upload_over_the_cap_is_refused_before_it_is_read(capped: RunningServer) -> None:
    digest = "sha256:" + "ab" * 32
    answer = _put(capped, digest, CAP + 1, b"x")
    assert answer.status_code == 413
    assert "over this server's limit" in answer.json()["message"]
    parts = capped.workspace.artifacts.root / "uploads"
    assert not list(parts.glob("*.part"))  # nothing was written


def test_a_body_longer_than_announced_is_refused_before_it_is_read(capped: RunningServer) -> None:
    data = os.urandom(1000)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    answer = _put(capped, digest, 10, data)
    assert answer.status_code == 413
    assert "does not fit" in answer.json()["message"]


def test_a_streamed_upload_over_the_cap_is_cut_off(capped: RunningServer) -> None:
    """Chunked, so no Content-Length to refuse: the guard counts the bytes and stops at the cap
    (the announced size may claim anything up to it)."""

    def chunks() -> Iterator[bytes]:
        for _ in range(64):
            yield b"x" * 65536  # 4 MiB in all, four times the cap

    answer = _put(capped, "sha256:" + "cd" * 32, CAP, chunks())
    assert answer.status_code == 413
    part = capped.workspace.artifacts.root / "uploads" / f"{'cd' * 32}.part"
    assert not part.exists() or part.stat().st_size <= CAP


def _parts(ws: Workspace) -> tuple[Path, Path]:
    folder = ws.artifacts.root / "uploads"
    folder.mkdir(parents=True, exist_ok=True)
    old, fresh = folder / f"{'11' * 32}.part", folder / f"{'22' * 32}.part"
    old.write_bytes(b"a" * 100)
    fresh.write_bytes(b"b" * 10)
    two_days_ago = time.time() - 2 * 86400
    os.utime(old, (two_days_ago, two_days_ago))
    return old, fresh


def test_gc_collects_stale_upload_parts(sqlite_workspace: Workspace) -> None:
    old, fresh = _parts(sqlite_workspace)
    runner = CliRunner()
    dry = runner.invoke(cli, ["-C", str(sqlite_workspace.root), "gc", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert "would remove: 1 stale upload part(s) (100 B)" in dry.output
    assert old.exists()
    result = runner.invoke(cli, ["-C", str(sqlite_workspace.root), "gc"])
    assert result.exit_code == 0, result.output
    assert "removed: 1 stale upload part(s)" in result.output
    assert not old.exists()
    assert fresh.exists()  # an upload may still resume it


def test_the_server_collects_stale_parts_when_it_starts(sqlite_workspace: Workspace) -> None:
    old, fresh = _parts(sqlite_workspace)
    assert collect_stale_uploads(sqlite_workspace) == 1
    assert not old.exists()
    assert fresh.exists()
