"""Uploads under load: two clients sending the same blob at once, and the event loop staying
free while an upload is written and hashed."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from conftest_remote import RunningServer, start_server
from modelyard.hashing import digest_file
from modelyard.remote import RemoteArtifactStore, RemoteClient
from modelyard.server import artifacts_api
from modelyard.workspace import Workspace


@pytest.fixture
def running(sqlite_workspace: Workspace) -> Iterator[RunningServer]:
    srv = start_server(sqlite_workspace)
    yield srv
    srv.stop()


class MeetBeforeBody(httpx.HTTPTransport):
    """Holds the first upload body until every client has sent its request line and headers,
    so the uploads of one digest are inside the server at the same time."""

    def __init__(self, barrier: threading.Barrier) -> None:
        super().__init__()
        self.barrier = barrier
        self.met = False

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.method == "PUT" and not self.met:
            self.met = True
            original = request.stream

            def body() -> Iterator[bytes]:
                self.barrier.wait(timeout=60)  # only a broken test ever waits that long
                yield from original  # type: ignore[misc]

            request = httpx.Request(
                request.method, request.url, headers=request.headers, content=body()
            )
        return super().handle_request(request)


def test_concurrent_uploads_of_one_digest_both_succeed(
    running: RunningServer, tmp_path: Path
) -> None:
    data = os.urandom(8 * (1 << 20) + 17)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    source = tmp_path / "blob.bin"
    source.write_bytes(data)
    barrier = threading.Barrier(2)
    results: dict[int, str] = {}
    errors: dict[int, BaseException] = {}

    def upload(i: int) -> None:
        client = RemoteClient(running.url, running.admin_token, transport=MeetBeforeBody(barrier))
        try:
            results[i] = RemoteArtifactStore(tmp_path / f"cache{i}", client).put_file(source)
        except BaseException as exc:  # reported by the main thread
            errors[i] = exc
        finally:
            client.close()

    threads = [threading.Thread(target=upload, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == {}
    assert results == {0: digest, 1: digest}
    server_store = running.workspace.artifacts
    server_store.verify(digest)
    assert server_store.get_bytes(digest) == data
    assert list((server_store.root / "uploads").iterdir()) == []  # no part left behind


def test_the_server_answers_while_an_upload_is_hashed(
    running: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The hash of a finished upload is held until the server has answered another request:
    on the event loop that would deadlock (until the client's timeout fails the test)."""
    hashing, release = threading.Event(), threading.Event()
    real = digest_file

    def held(path: Path) -> str:
        hashing.set()
        release.wait(timeout=60)
        return real(path)

    monkeypatch.setattr(artifacts_api, "digest_file", held)  # what the upload hashes with
    data = os.urandom(3 * (1 << 20))
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    client = RemoteClient(running.url, running.admin_token)
    answers: list[httpx.Response] = []
    put = threading.Thread(
        target=lambda: answers.append(
            client.http.put(f"/uploads/{digest}", params={"size": len(data)}, content=data)
        )
    )
    put.start()
    try:
        assert hashing.wait(timeout=60)
        health = httpx.get(f"{running.url}/api/health", timeout=30)
        assert health.status_code == 200
        assert not running.workspace.artifacts.exists(digest)  # the upload is still hashing
    finally:
        release.set()
        put.join(timeout=60)
        client.close()
    assert answers[0].status_code == 200, answers[0].text
    assert answers[0].json() == {"digest": digest, "complete": True, "offset": len(data)}
    assert running.workspace.artifacts.get_bytes(digest) == data
