"""Workspace discovery and configuration precedence."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from modelyard.cli.main import cli
from modelyard.config import load_settings
from modelyard.errors import ConfigError, WorkspaceNotFound
from modelyard.workspace import Workspace


def test_init_creates_config_and_state(tmp_path: Path) -> None:
    ws, created = Workspace.init(tmp_path / "p", environ={})
    ws.close()
    assert created
    assert (tmp_path / "p" / "modelyard.toml").is_file()
    assert (tmp_path / "p" / ".modelyard" / "modelyard.db").is_file()
    assert (tmp_path / "p" / ".modelyard" / ".gitignore").read_text().endswith("*\n")
    again, created_again = Workspace.init(tmp_path / "p", environ={})
    again.close()
    assert not created_again


def test_found_from_a_subfolder_like_git(tmp_path: Path) -> None:
    Workspace.init(tmp_path, environ={})[0].close()
    deep = tmp_path / "a" / "b"
    deep.mkdir(parents=True)
    assert Workspace.find(deep, environ={}).root == tmp_path.resolve()


def test_not_found_says_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(WorkspaceNotFound, match="run 'modelyard init'"):
        Workspace.find(tmp_path, environ={})


def test_pyproject_tool_table_makes_a_workspace(tmp_path: Path) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[project]\nname = "x"\n\n[tool.modelyard.artifacts]\nroot = "blobs"\n'
    )
    ws = Workspace.find(tmp_path, environ={})
    assert ws.settings.artifact_root == (tmp_path / "blobs").resolve()


def test_environment_overrides_file(tmp_path: Path) -> None:
    (tmp_path / "modelyard.toml").write_text(
        '[store]\nurl = "sqlite:///from-file.db"\n[artifacts]\nroot = "a"\n[serve]\nport = 9\n'
    )
    from_file = load_settings(tmp_path, environ={})
    assert from_file.store_url == f"sqlite:///{tmp_path.resolve() / 'from-file.db'}"
    assert from_file.section("serve") == {"port": 9}
    env = {"MODELYARD_STORE_URL": "postgresql://db/x", "MODELYARD_ARTIFACT_ROOT": "/srv/a"}
    overridden = load_settings(tmp_path, environ=env)
    assert overridden.store_url == "postgresql://db/x"
    assert overridden.artifact_root == Path("/srv/a")


def test_malformed_config_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "modelyard.toml").write_text("[store\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(tmp_path, environ={})


def test_explicit_workspace_variable(tmp_path: Path) -> None:
    Workspace.init(tmp_path / "w", environ={})[0].close()
    env = {"MODELYARD_WORKSPACE": str(tmp_path / "w")}
    assert Workspace.find(environ=env).root == (tmp_path / "w").resolve()
    with pytest.raises(WorkspaceNotFound, match="is not a modelyard workspace"):
        Workspace.find(environ={"MODELYARD_WORKSPACE": str(tmp_path)})


def test_cli_init_and_missing_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELYARD_STORE_URL", raising=False)
    monkeypatch.delenv("MODELYARD_WORKSPACE", raising=False)
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    result = runner.invoke(cli, ["runs", "list"])
    assert result.exit_code == 1
    assert "error: no modelyard workspace in" in result.stderr
    assert "Traceback" not in result.output
    result = runner.invoke(cli, ["init"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Initialised modelyard workspace in {tmp_path.resolve()}\n"
    result = runner.invoke(cli, ["init"])
    assert "already a modelyard workspace" in result.stdout


def test_unreachable_store_url_fails_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MODELYARD_STORE_URL", "postgresql://u:topsecret@127.0.0.1:1/x")
    result = CliRunner().invoke(cli, ["init"])
    assert result.exit_code == 1
    assert result.stderr.startswith("error: cannot connect to the store postgresql")
    assert "topsecret" not in result.output
    assert len(result.stderr.strip().splitlines()) == 1


def test_usage_errors_exit_2(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["no-such-command"])
    assert result.exit_code == 2


def test_bracketed_names_survive_in_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MODELYARD_STORE_URL", raising=False)
    monkeypatch.delenv("MODELYARD_WORKSPACE", raising=False)
    (tmp_path / "modelyard.toml").write_text("store = 3\n")
    result = CliRunner().invoke(cli, ["runs", "list"])
    assert result.exit_code == 1
    assert "[store] and [artifacts] in the workspace config must be tables" in result.stderr
