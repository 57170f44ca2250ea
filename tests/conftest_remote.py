"""Fixtures that run the team server for real (uvicorn on a free loopback port, in a thread)
and hand out client workspaces pointing at it. Imported by the server/remote/auth test modules
(``from conftest_remote import ...``); not a pytest plugin, so other tests are unaffected."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from modelyard.workspace import Workspace


@dataclass
class RunningServer:
    url: str
    workspace: Workspace
    admin_token: str
    server: Any
    thread: threading.Thread

    def token(self, role: str, *, expired: bool = False, revoked: bool = False) -> str:
        expires = datetime.now(UTC) - timedelta(seconds=1) if expired else None
        tok, secret = self.workspace.store.tokens.create(f"test-{role}", role, expires_at=expires)
        if revoked:
            self.workspace.store.tokens.revoke(tok.id)
        return secret

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(ws: Workspace, **app_kwargs: Any) -> RunningServer:
    import uvicorn

    from modelyard.server import create_app

    _, admin = ws.store.tokens.create("test-admin", "admin")
    port = free_port()
    config = uvicorn.Config(
        create_app(ws, **app_kwargs),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    return RunningServer(f"http://127.0.0.1:{port}", ws, admin, server, thread)


@pytest.fixture
def server(workspace: Workspace) -> Iterator[RunningServer]:
    """The server over the ``workspace`` fixture (SQLite and PostgreSQL variants)."""
    running = start_server(workspace)
    yield running
    running.stop()


def client_workspace(root: Path, url: str, token: str) -> tuple[Workspace, dict[str, str]]:
    env = {"MODELYARD_URL": url, "MODELYARD_TOKEN": token}
    ws, _ = Workspace.init(root, environ=env)
    return ws, env


@pytest.fixture
def remote_workspace(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Workspace]:
    """A client workspace whose store and artifacts are the server's; the current folder and
    the environment point at it, like the ``workspace`` fixture does for a local one."""
    ws, env = client_workspace(tmp_path / "client", server.url, server.admin_token)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.chdir(ws.root)
    yield ws
    ws.close()


@pytest.fixture
def writer_and_admin(
    server: RunningServer, tmp_path: Path
) -> Iterator[tuple[Workspace, Workspace]]:
    """A ``write`` token's and an ``admin`` token's client workspaces of ``server``."""
    writer, _ = client_workspace(tmp_path / "writer", server.url, server.token("write"))
    admin, _ = client_workspace(tmp_path / "admin", server.url, server.admin_token)
    yield writer, admin
    writer.close()
    admin.close()
