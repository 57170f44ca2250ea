"""``modelyard tokens`` against a team server: the same commands over HTTP, admin only, and the
secret leaves the server once, in the answer to ``create``."""

from __future__ import annotations

import logging
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner, Result

from conftest_remote import RunningServer, client_workspace, server  # noqa: F401 - fixture
from modelyard.cli.main import cli
from modelyard.errors import Forbidden
from modelyard.remote import RemoteStore
from modelyard.store.server import hash_token


def _client_env(
    running: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, token: str
) -> dict[str, str]:
    """A client workspace as the current folder; its environment points at the server."""
    ws, env = client_workspace(tmp_path / "client", running.url, token)
    ws.close()
    monkeypatch.chdir(ws.root)
    return env


def _run(env: dict[str, str], *args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env=env)


def test_admin_creates_lists_and_revokes_tokens_over_http(
    server: RunningServer,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    env = _client_env(server, tmp_path, monkeypatch, server.admin_token)

    created = _run(env, "tokens", "create", "ci", "--role", "write", "--expires-in", "2d")
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("myd_")
    token = server.workspace.store.tokens.authenticate(secret)  # made on the server
    assert token is not None
    assert (token.name, token.role) == ("ci", "write")
    assert token.expires_at is not None
    assert token.created_by == "test-admin"  # the caller's token, not the CLI's "cli"

    listed = _run(env, "tokens", "list")
    assert listed.exit_code == 0, listed.output
    assert token.id in listed.output
    assert "test-admin" in listed.output
    assert secret not in listed.output

    as_writer = {**env, "MODELYARD_TOKEN": secret}
    works = _run(as_writer, "runs", "list")
    assert works.exit_code == 0, works.output

    revoked = _run(env, "tokens", "revoke", token.id)
    assert revoked.exit_code == 0, revoked.output
    assert f"Revoked token {token.id} (ci)." in revoked.output
    refused = _run(as_writer, "runs", "list")
    assert refused.exit_code == 1
    assert "the server refused the token" in refused.output
    response = httpx.post(
        f"{server.url}/api/v1/store/runs/count",
        json={},
        headers={"authorization": f"Bearer {secret}"},
    )
    assert response.status_code == 401

    missing = _run(env, "tokens", "revoke", "0" * 16)
    assert missing.exit_code == 1
    assert "no API token with id" in missing.output
    assert secret not in caplog.text


@pytest.mark.parametrize("role", ["write", "read"])
def test_only_admins_manage_tokens(
    server: RunningServer,  # noqa: F811
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    role: str,
) -> None:
    weak = server.token(role)
    env = _client_env(server, tmp_path, monkeypatch, weak)

    def state() -> list[tuple[str, str, object]]:
        return [(t.id, t.name, t.revoked_at) for t in server.workspace.store.tokens.list()]

    before = state()
    admin = next(t for t in server.workspace.store.tokens.list() if t.name == "test-admin")
    for args in (
        ["tokens", "create", "mine", "--role", "admin"],
        ["tokens", "list"],
        ["tokens", "revoke", admin.id],
    ):
        result = _run(env, *args)
        assert result.exit_code == 1, (args, result.output)
        assert "does not grant 'admin'" in result.output
    assert state() == before  # nothing created, nothing revoked

    store = RemoteStore.connect(server.url, weak)
    try:
        with pytest.raises(Forbidden):
            store.tokens.get(admin.id)
    finally:
        store.close()


def test_no_route_authenticates_or_returns_hashes(server: RunningServer) -> None:  # noqa: F811
    store = RemoteStore.connect(server.url, server.admin_token)
    try:
        with pytest.raises(AttributeError, match="not available through the server"):
            store.tokens.authenticate(server.admin_token)
        with pytest.raises(AttributeError):
            store.tokens.has_active_admin()
    finally:
        store.close()
    auth = {"authorization": f"Bearer {server.admin_token}"}
    for method in ("authenticate", "has_active_admin"):
        response = httpx.post(
            f"{server.url}/api/v1/store/tokens/{method}",
            json={"secret": server.admin_token},
            headers=auth,
        )
        assert response.status_code == 404, (method, response.text)
    listed = httpx.post(f"{server.url}/api/v1/store/tokens/list", json={}, headers=auth)
    assert listed.status_code == 200
    assert "hash" not in listed.text
    assert hash_token(server.admin_token) not in listed.text
    assert server.admin_token not in listed.text
