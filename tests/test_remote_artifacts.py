"""Artifact transfer to and from the team server: streamed, resumed after a broken connection,
verified by digest at the receiving end."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest_remote import RunningServer, start_server
from modelyard.errors import CorruptArtifact
from modelyard.remote import RemoteArtifactStore, RemoteClient
from modelyard.workspace import Workspace


@pytest.fixture
def running(sqlite_workspace: Workspace) -> Iterator[RunningServer]:
    srv = start_server(sqlite_workspace)
    yield srv
    srv.stop()


class BreakOnce(httpx.HTTPTransport):
    """Cuts the first upload after ``limit`` body bytes, and the first download's body."""

    def __init__(self, limit: int) -> None:
        super().__init__()
        self.limit = limit
        self.broken_up = self.broken_down = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and not self.broken_up:
            self.broken_up = True
            sent = 0
            original = request.stream

            def cut() -> Iterator[bytes]:
                nonlocal sent
                for chunk in original:  # type: ignore[union-attr]
                    if sent + len(chunk) > self.limit:
                        raise httpx.WriteError("connection reset (test)")
                    sent += len(chunk)
                    yield chunk

            request = httpx.Request(
                request.method, request.url, headers=request.headers, content=cut()
            )
        response = super().handle_request(request)
        url = str(request.url)
        if (
            request.method == "GET"
            and "/artifacts/sha256:" in url
            and not self.broken_down
            and not url.endswith(("/info", "/direct"))
        ):
            self.broken_down = True
            body = response.stream

            def half() -> Iterator[bytes]:
                got = 0
                for chunk in body:  # type: ignore[union-attr]
                    got += len(chunk)
                    yield chunk
                    if got >= self.limit:
                        raise httpx.ReadError("connection reset (test)")

            return httpx.Response(response.status_code, headers=response.headers, content=half())
        return response


def test_upload_and_download_resume_after_a_broken_connection(
    running: RunningServer, tmp_path: Path
) -> None:
    data = os.urandom(5 * (1 << 20) + 123)  # several chunks
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    transport = BreakOnce(limit=2 * (1 << 20))
    client = RemoteClient(running.url, running.admin_token, transport=transport)
    store = RemoteArtifactStore(tmp_path / "cache", client)
    source = tmp_path / "blob.bin"
    source.write_bytes(data)
    assert store.put_file(source) == digest
    assert transport.broken_up
    server_store = running.workspace.artifacts
    assert server_store.get_bytes(digest) == data  # verified on the server end

    other = RemoteArtifactStore(tmp_path / "cache2", client)
    other.export_file(digest, tmp_path / "back.bin")
    assert transport.broken_down
    assert (tmp_path / "back.bin").read_bytes() == data
    assert not list((tmp_path / "cache2" / "downloads").iterdir())  # no part left behind
    client.close()


def test_corrupt_uploads_and_downloads_are_refused(running: RunningServer, tmp_path: Path) -> None:
    client = RemoteClient(running.url, running.admin_token)
    wrong = "sha256:" + "0" * 64
    response = client.http.put(f"/uploads/{wrong}", params={"size": 3}, content=b"abc")
    assert response.status_code == 422
    assert response.json()["error"] == "CorruptArtifact"
    assert not running.workspace.artifacts.exists(wrong)

    digest = running.workspace.artifacts.put_bytes(b"genuine")
    os.chmod(running.workspace.artifacts.path(digest), 0o644)
    running.workspace.artifacts.path(digest).write_bytes(b"tampered")
    store = RemoteArtifactStore(tmp_path / "cache", client)
    with pytest.raises(CorruptArtifact):
        store.get_bytes(digest)
    assert not store.path(digest).exists()
    client.close()


@pytest.mark.slow
def test_large_artifact_moves_with_flat_memory(running: RunningServer, tmp_path: Path) -> None:
    """300 MB up and down in a child process whose peak RSS must stay far below the size."""
    size_mb = 300
    blob = tmp_path / "big.bin"
    with blob.open("wb") as f:
        chunk = os.urandom(1 << 20)
        for i in range(size_mb):
            f.write(chunk[:-8] + i.to_bytes(8, "big"))
    script = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from modelyard.remote import RemoteArtifactStore, RemoteClient
        client = RemoteClient({running.url!r}, {running.admin_token!r})
        up = RemoteArtifactStore(Path({str(tmp_path / "c1")!r}), client)
        digest = up.put_file(Path({str(blob)!r}))
        down = RemoteArtifactStore(Path({str(tmp_path / "c2")!r}), client)
        down.export_file(digest, Path({str(tmp_path / "back.bin")!r}))
        # VmHWM, not ru_maxrss: a child forked from a big pytest process inherits the
        # parent's high-water mark in ru_maxrss; VmHWM belongs to this process's own memory.
        hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
        print(digest, int(hwm.split()[1]) // 1024)
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=240
    ).stdout.split()
    digest, peak_mb = out[0], int(out[1])
    assert running.workspace.artifacts.size(digest) == size_mb << 20
    assert (tmp_path / "back.bin").stat().st_size == size_mb << 20
    assert peak_mb < 200, f"client peak RSS {peak_mb} MB for a {size_mb} MB artifact"
