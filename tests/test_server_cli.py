"""``modelyard tokens`` and the safety checks of ``modelyard server``."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from modelyard.cli.main import cli
from modelyard.errors import UsageError
from modelyard.server.launch import bootstrap_admin, check_bind
from modelyard.workspace import Workspace


def test_tokens_create_list_revoke(workspace: Workspace) -> None:
    runner = CliRunner()
    created = runner.invoke(
        cli, ["tokens", "create", "ci", "--role", "write", "--expires-in", "2d"]
    )
    assert created.exit_code == 0, created.output
    secret = created.stdout.strip().splitlines()[-1]
    assert secret.startswith("myd_")
    token = workspace.store.tokens.authenticate(secret)
    assert token is not None
    assert token.role == "write"
    assert token.expires_at is not None
    listed = runner.invoke(cli, ["tokens", "list"])
    assert listed.exit_code == 0, listed.output
    assert token.id in listed.output
    assert secret not in listed.output
    revoked = runner.invoke(cli, ["tokens", "revoke", token.id])
    assert revoked.exit_code == 0
    assert f"Revoked token {token.id} (ci)." in revoked.output
    assert workspace.store.tokens.authenticate(secret) is None
    assert runner.invoke(cli, ["tokens", "revoke", "nope"]).exit_code == 1
    bad = runner.invoke(cli, ["tokens", "create", "x", "--expires-in", "soon"])
    assert bad.exit_code == 2
    assert "--expires-in 'soon'" in bad.output
    assert runner.invoke(cli, ["tokens", "create", "x", "--role", "root"]).exit_code == 2


def test_non_loopback_without_auth_is_refused(sqlite_workspace: Workspace) -> None:
    assert check_bind("0.0.0.0", no_auth=False, insecure_no_auth=False) is True
    assert check_bind("127.0.0.1", no_auth=True, insecure_no_auth=False) is False
    assert check_bind("::1", no_auth=True, insecure_no_auth=False) is False
    with pytest.raises(UsageError, match="refusing to serve 0.0.0.0 without authentication"):
        check_bind("0.0.0.0", no_auth=True, insecure_no_auth=False)
    with pytest.raises(UsageError):
        check_bind("example.com", no_auth=True, insecure_no_auth=False)
    assert check_bind("0.0.0.0", no_auth=False, insecure_no_auth=True) is False
    result = CliRunner().invoke(cli, ["server", "--host", "0.0.0.0", "--no-auth"])
    assert result.exit_code == 2
    assert "refusing to serve" in result.output


def test_first_start_prints_one_admin_token_once(workspace: Workspace) -> None:
    first = bootstrap_admin(workspace)
    assert first.token is not None
    assert workspace.store.tokens.authenticate(first.token) is not None
    assert bootstrap_admin(workspace).token is None  # never a second one
