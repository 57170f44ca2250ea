"""Promotion gates decided by the team server: a client calling ``move_alias`` directly cannot
skip them, overriding one takes an admin token, and the history keeps the checks the server
saw fail, whatever the client claimed."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from click.testing import CliRunner

import modelyard.models as models
from conftest_remote import (  # noqa: F401 - fixtures used by name
    RunningServer,
    client_workspace,
    remote_workspace,
    server,
    start_server,
    writer_and_admin,
)
from modelyard.cli.main import cli
from modelyard.errors import Forbidden, GateFailed, NotFound
from modelyard.store.models_entities import ModelVersion
from modelyard.tracking import start_run
from modelyard.workspace import Workspace

GATE = "f1 >= 0.9"
FAILED = "f1 >= 0.9: f1 = 0.85 fails >= 0.9"


def _version(ws: Workspace, f1: float) -> ModelVersion:
    """A version of ``churn`` whose run logged ``f1`` (no model files: gates read metrics)."""
    with start_run("train", workspace=ws) as run:
        run.log_metric("f1", f1)
    return ws.store.models.add_version(
        "churn",
        digest="sha256:" + hashlib.sha256(run.id.encode()).hexdigest(),
        flavor="sklearn",
        signature=None,
        requirements={},
        run_id=run.id,
        source=None,
    )


def test_a_direct_move_cannot_skip_the_gate(
    server: RunningServer,  # noqa: F811
    writer_and_admin: tuple[Workspace, Workspace],  # noqa: F811
) -> None:
    local = server.workspace
    _version(local, 0.85)
    models.set_gate("churn", [GATE], aliases=["staging"], workspace=local)
    writer, admin = writer_and_admin

    with pytest.raises(GateFailed) as refused:
        writer.store.models.move_alias("churn", "staging", 1, actor="writer")
    assert refused.value.failed_checks == [FAILED]
    assert FAILED in refused.value.message
    with pytest.raises(Forbidden, match="needs 'admin'"):
        writer.store.models.move_alias(
            "churn", "staging", 1, actor="writer", forced=True, failed_checks=["none, trust me"]
        )
    assert local.store.models.alias_history("churn") == []  # nothing moved
    with pytest.raises(NotFound):
        local.store.models.get_version("churn", alias="staging")

    move = admin.store.models.move_alias(
        "churn", "staging", 1, actor="someone-else", forced=True, failed_checks=["client check"]
    )
    # The server's failure first, then what the client says it overrode of its own config.
    assert (move.to_version, move.forced, move.failed_checks) == (
        1,
        True,
        [FAILED, "client check"],
    )
    assert move.actor == "test-admin"
    assert local.store.models.alias_history("churn") == [move]
    assert local.store.models.get_version("churn", alias="staging").version == 1

    # Removing an alias needs no gate, and a removal overrides nothing.
    removed = writer.store.models.move_alias(
        "churn", "staging", None, actor="writer", forced=True, failed_checks=["made up"]
    )
    assert (removed.to_version, removed.forced, removed.failed_checks) == (None, False, None)


def test_a_passing_server_gate_keeps_the_clients_own_override(
    server: RunningServer,  # noqa: F811
    writer_and_admin: tuple[Workspace, Workspace],  # noqa: F811
) -> None:
    local = server.workspace
    _version(local, 0.95)
    models.set_gate("churn", [GATE], workspace=local)
    writer, _ = writer_and_admin
    move = writer.store.models.move_alias("churn", "staging", 1, actor="writer", forced=True)
    assert (move.to_version, move.forced, move.failed_checks) == (1, False, None)
    # A client forcing past a check of its own config (invisible to the server) keeps the record,
    # and needs no admin: the server's own gate passed.
    own = writer.store.models.move_alias(
        "churn", "staging", 1, actor="writer", forced=True, failed_checks=["client check"]
    )
    assert (own.forced, own.failed_checks) == (True, ["client check"])


def test_promote_through_the_client(
    server: RunningServer,  # noqa: F811
    remote_workspace: Workspace,  # noqa: F811
) -> None:
    local = server.workspace
    _version(local, 0.95)
    _version(local, 0.85)
    models.set_gate("churn", [GATE], workspace=local)

    done = models.promote("churn@1", "staging", reason="good", workspace=remote_workspace)
    assert done.report.passed
    assert (done.move.to_version, done.move.forced, done.move.reason) == (1, False, "good")
    with pytest.raises(models.PromotionRefused):
        models.promote("churn@2", "staging", workspace=remote_workspace)
    forced = models.promote("churn@2", "staging", force=True, workspace=remote_workspace)
    assert (forced.move.forced, forced.move.failed_checks) == (True, [FAILED])
    assert [m.to_version for m in local.store.models.alias_history("churn")] == [1, 2]


def test_the_server_config_gate_applies_to_clients(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A gate only the server's config declares: the client's own evaluation passes, the
    server refuses, and the CLI shows which check failed; an admin's --force overrides it."""
    config = workspace.root / "modelyard.toml"
    config.write_text(config.read_text() + f'\n[models.gate]\nchecks = ["{GATE}"]\n')
    gated = Workspace.at(workspace.root, {"MODELYARD_STORE_URL": workspace.settings.store_url})
    running = start_server(gated)
    try:
        _version(gated, 0.85)
        client, env = client_workspace(tmp_path / "client", running.url, running.token("write"))
        client.close()
        monkeypatch.chdir(client.root)
        runner = CliRunner()

        refused = runner.invoke(cli, ["models", "promote", "churn@1", "staging"], env=env)
        assert refused.exit_code == 1, refused.output
        assert "failed on the server" in refused.output
        assert FAILED in refused.output
        forced = runner.invoke(cli, ["models", "promote", "churn@1", "staging", "--force"], env=env)
        assert forced.exit_code == 1, forced.output
        assert "needs 'admin'" in forced.output
        assert gated.store.models.alias_history("churn") == []

        admin = {**env, "MODELYARD_TOKEN": running.admin_token}
        done = runner.invoke(cli, ["models", "promote", "churn@1", "staging", "--force"], env=admin)
        assert done.exit_code == 0, done.output
        assert "FORCED" in done.output
        [move] = gated.store.models.alias_history("churn")
        assert (move.forced, move.failed_checks) == (True, [FAILED])
    finally:
        running.stop()
        gated.close()
