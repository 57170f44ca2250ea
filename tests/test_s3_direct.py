"""Direct transfer: a team server whose artifacts live in a bucket hands its clients presigned
URLs, so large blobs go straight between client and bucket; the server verifies an upload's
digest before it becomes a blob."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from conftest_remote import RunningServer, client_workspace, start_server
from conftest_s3 import keys
from modelyard.errors import CorruptArtifact
from modelyard.remote import RemoteArtifactStore
from modelyard.server.direct_api import DIRECT_MIN_SIZE
from modelyard.workspace import Workspace

MiB = 1 << 20


@pytest.fixture
def running(s3_workspace: Workspace) -> Iterator[RunningServer]:
    srv = start_server(s3_workspace)
    yield srv
    srv.stop()


class Recording(httpx.HTTPTransport):
    """Counts the body bytes each request sends to the server."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[tuple[str, str]] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.sent.append((request.method, request.url.path))
        return super().handle_request(request)


def _client(running: RunningServer, root: Path) -> tuple[Workspace, RemoteArtifactStore]:
    ws, _ = client_workspace(root, running.url, running.admin_token)
    artifacts = ws.artifacts
    assert isinstance(artifacts, RemoteArtifactStore)
    return ws, artifacts


def _blob(path: Path, size: int) -> Path:
    path.write_bytes(os.urandom(size))
    return path


def test_a_large_blob_goes_straight_to_the_bucket_and_back(
    s3: Any, bucket: str, running: RunningServer, tmp_path: Path
) -> None:
    server_cache = running.workspace.artifacts.root
    ws, artifacts = _client(running, tmp_path / "up")
    big = _blob(tmp_path / "big.bin", DIRECT_MIN_SIZE + 3 * MiB)
    small = artifacts.put_bytes(b"small blobs still go through the server")
    digest = artifacts.put_file(big)
    assert digest == f"sha256:{hashlib.sha256(big.read_bytes()).hexdigest()}"
    hexd = digest[7:]
    assert f"team/artifacts/sha256/{hexd[:2]}/{hexd[2:]}" in keys(s3, bucket)
    assert keys(s3, bucket, "team/artifacts/staging/") == [], "the staged upload is gone"
    server_blobs = {p.name for p in server_cache.rglob("*") if p.is_file()}
    assert hexd[2:] not in server_blobs, "the server must not have carried the large blob"
    assert small[9:] in server_blobs  # the small one went through it
    ws.close()

    ws2, reader = _client(running, tmp_path / "down")
    recorder = Recording()
    reader.client.http._transport = recorder  # see what the client asks the server for
    reader.export_file(digest, tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == big.read_bytes()
    assert ("GET", f"/api/v1/artifacts/{digest}") not in recorder.sent
    assert ("GET", f"/api/v1/artifacts/{digest}/direct") in recorder.sent
    assert hexd[2:] not in {p.name for p in server_cache.rglob("*") if p.is_file()}
    ws2.close()


def test_a_client_cannot_record_bytes_under_another_digest(
    s3: Any, bucket: str, running: RunningServer, tmp_path: Path
) -> None:
    """Announce the digest of one content, send other bytes to the presigned URLs: the server
    refuses to complete it and nothing appears under that digest."""
    claimed = "sha256:" + hashlib.sha256(b"what I claim").hexdigest()
    size = DIRECT_MIN_SIZE
    api = httpx.Client(
        base_url=f"{running.url}/api/v1",
        headers={"authorization": f"Bearer {running.token('write')}"},
    )
    with api, httpx.Client() as plain:
        plan = api.post(f"/uploads/{claimed}/direct", json={"size": size}).json()
        assert plan["direct"]
        assert not plan["complete"]
        assert len(plan["urls"]) == 1
        sent = plain.put(plan["urls"][0], content=os.urandom(size))
        assert sent.status_code == 200
        done = api.post(
            f"/uploads/{claimed}/direct/complete",
            json={
                "session": plan["session"],
                "upload_id": plan["upload_id"],
                "parts": [{"number": 1, "etag": sent.headers["etag"]}],
            },
        )
        assert done.status_code == 422
        assert done.json()["error"] == "CorruptArtifact"
        assert keys(s3, bucket) == [], "neither the blob nor the staged upload remains"
        read = api.post(f"/uploads/{claimed}/direct", json={"size": size})
        assert read.json()["complete"] is False
        refused = httpx.post(
            f"{running.url}/api/v1/uploads/{claimed}/direct",
            json={"size": size},
            headers={"authorization": f"Bearer {running.token('read')}"},
        )
        assert refused.status_code == 403


def test_concurrent_uploads_of_one_digest_are_safe(
    s3: Any, bucket: str, running: RunningServer, tmp_path: Path
) -> None:
    big = _blob(tmp_path / "big.bin", DIRECT_MIN_SIZE + MiB)
    results: list[str] = []
    errors: list[BaseException] = []

    def upload(i: int) -> None:
        ws, artifacts = _client(running, tmp_path / f"c{i}")
        try:
            results.append(artifacts.put_file(big))
        except BaseException as exc:  # collected for the assertion below
            errors.append(exc)
        finally:
            ws.close()

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    assert len(set(results)) == 1
    assert len(results) == 3
    digest = results[0]
    assert keys(s3, bucket) == [f"team/artifacts/sha256/{digest[7:9]}/{digest[9:]}"]
    ws, reader = _client(running, tmp_path / "reader")
    assert reader.get_bytes(digest) == big.read_bytes()
    ws.close()


def test_a_tampered_object_is_refused_by_the_downloading_client(
    s3: Any, bucket: str, running: RunningServer, tmp_path: Path
) -> None:
    ws, artifacts = _client(running, tmp_path / "up")
    digest = artifacts.put_file(_blob(tmp_path / "big.bin", DIRECT_MIN_SIZE))
    ws.close()
    key = f"team/artifacts/sha256/{digest[7:9]}/{digest[9:]}"
    s3.put_object(Bucket=bucket, Key=key, Body=os.urandom(DIRECT_MIN_SIZE))
    ws2, reader = _client(running, tmp_path / "down")
    with pytest.raises(CorruptArtifact):
        reader.get_bytes(digest)
    ws2.close()
