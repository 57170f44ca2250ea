"""Code trust: a model whose loading runs its own code (Python source, a pickle) is loaded,
built into an image or deployed only after an admin trusted its digest.

Found on main: a ``write`` token could register a ``python`` model, and its code ran as the
serving user as soon as anyone served or deployed ``NAME@latest``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

import modelyard.models as models
from _models import AddOne
from conftest_remote import (  # noqa: F401 - fixtures used by name
    RunningServer,
    server,
    writer_and_admin,
)
from modelyard.cli.main import cli
from modelyard.errors import Forbidden, UnsafeModel
from modelyard.flavors import save_model
from modelyard.workspace import Workspace

UNTRUSTED = r"python model: loading it runs its own code .* no admin has trusted it"


def _python_model(folder: Path) -> Path:
    save_model(AddOne(), folder, input_example=np.zeros((2, 3)))
    return folder


def test_a_python_model_runs_only_after_it_is_trusted(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    ws = sqlite_workspace
    version = models.register(_python_model(tmp_path / "m"), "adder", workspace=ws)
    assert not version.code_trusted

    with pytest.raises(UnsafeModel, match=UNTRUSTED):
        models.load("adder@latest", ws)
    with pytest.raises(UnsafeModel, match=UNTRUSTED):
        models.plan_serving("adder@1", ws)
    from modelyard.packaging.dockerfile import plan_model_image

    with pytest.raises(UnsafeModel, match=UNTRUSTED):  # before any wheel or image work
        plan_model_image("adder@1", workspace=ws)
    from modelyard import deploy

    with pytest.raises(UnsafeModel, match=UNTRUSTED):
        deploy.deploy(deploy.DeploySpec("adder@1", "adder-api", target="local"), workspace=ws)
    assert ws.store.deployments.find("adder-api") is None  # nothing was recorded

    runner = CliRunner()
    result = runner.invoke(cli, ["-C", str(ws.root), "models", "trust", "adder@1"])
    assert result.exit_code == 0, result.output
    trusted = models.resolve("adder@1", ws)
    assert trusted.code_trusted
    assert trusted.trusted_digest == trusted.digest
    assert trusted.trusted_at is not None
    assert trusted.trusted_by
    assert models.load("adder@1", ws).predict(np.ones((2, 3))).tolist() == [2.0, 2.0]
    assert models.plan_serving("adder@1", ws).allow_pickle is True
    shown = runner.invoke(cli, ["-C", str(ws.root), "models", "show", "adder@1"]).output
    assert f"yes, by {trusted.trusted_by}" in shown

    result = runner.invoke(cli, ["-C", str(ws.root), "models", "trust", "adder@1", "--revoke"])
    assert result.exit_code == 0, result.output
    assert result.output == "adder@1: not trusted to run its code\n"
    with pytest.raises(UnsafeModel, match=UNTRUSTED):
        models.load("adder@1", ws)


def test_trust_is_bound_to_the_content_it_was_given_to(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    """The decision names a digest: a version whose recorded content differs from the one
    trusted is refused like an untrusted one, and says why."""
    ws = sqlite_workspace
    models.register(_python_model(tmp_path / "m"), "adder", trust_pickle=True, workspace=ws)
    assert models.resolve("adder@1", ws).code_trusted
    other = "sha256:" + "0" * 64
    from sqlalchemy import text

    with ws.store.db.engine.begin() as conn:  # what an edit of the record behind our back does
        conn.execute(text("UPDATE model_versions SET digest = :d"), {"d": other})
    version = models.resolve("adder@1", ws)
    assert not version.code_trusted
    with pytest.raises(UnsafeModel, match="was trusted for content sha256:.* but it holds"):
        models.check_code_trust(version)


def test_plain_scikit_learn_models_need_no_trust(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    from sklearn.linear_model import LogisticRegression

    x = np.random.default_rng(0).normal(size=(40, 3))
    save_model(LogisticRegression().fit(x, x[:, 0] > 0), tmp_path / "lr", input_example=x[:2])
    models.register(tmp_path / "lr", "lr", workspace=sqlite_workspace)
    assert models.load("lr@1", sqlite_workspace).predict(x[:2]).shape == (2,)


def test_on_a_team_server_only_an_admin_can_trust_code(
    server: RunningServer,  # noqa: F811
    writer_and_admin: tuple[Workspace, Workspace],  # noqa: F811
    tmp_path: Path,
) -> None:
    writer, admin = writer_and_admin
    folder = _python_model(tmp_path / "m")
    version = models.register(folder, "adder", workspace=writer)  # registering is allowed
    assert not version.code_trusted
    with pytest.raises(UnsafeModel, match=UNTRUSTED):
        models.load("adder@latest", writer)
    with pytest.raises(Forbidden):
        models.trust_pickle("adder@1", workspace=writer)
    with pytest.raises(Forbidden):  # nor by trusting it while registering
        models.register(folder, "adder", trust_pickle=True, workspace=writer)

    models.trust_pickle("adder@1", workspace=admin)
    trusted = models.resolve("adder@1", writer)
    assert trusted.code_trusted
    assert trusted.trusted_by == "test-admin"  # the server records the caller, not the client
    assert models.load("adder@1", writer).predict(np.zeros((1, 3))).tolist() == [1.0]
