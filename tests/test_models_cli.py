"""`modelyard models …` and `modelyard serve`: output and exit codes."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner, Result

import modelyard.models as models
from _models import expected_actor
from modelyard.cli.main import cli
from modelyard.hashing import short
from modelyard.workspace import Workspace

pytestmark = pytest.mark.remote  # the same tests against a team server too

pytest.importorskip("sklearn")
pytest.importorskip("skops")


@pytest.fixture(scope="module")
def trained() -> tuple[Any, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(1)
    x = rng.normal(size=(40, 3))
    return LogisticRegression().fit(x, (x[:, 0] > 0).astype(int)), x


@pytest.fixture(autouse=True)
def wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")


def train(ws: Workspace, trained: tuple[Any, np.ndarray], **metrics: float) -> str:
    from modelyard.tracking import start_run

    model, x = trained
    with start_run("train", workspace=ws) as run:
        run.log_metrics(metrics)
        run.log_model(model, input_example=x[:5])
        return run.id


def invoke(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_register_list_show_versions(workspace: Workspace, trained: tuple[Any, Any]) -> None:
    run_id = train(workspace, trained, f1=0.9)
    result = invoke("models", "register", run_id[:10], "--name", "churn", "--tag", "team=risk")
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("Registered churn@1 (sklearn")
    assert f"from run {run_id[:12]}" in result.stdout
    again = invoke("models", "register", run_id, "--name", "churn")
    assert again.stdout.startswith("Already registered as churn@1")  # same run, same model
    assert (
        invoke("models", "register", train(workspace, trained, f1=0.9), "--name", "churn").exit_code
        == 0
    )

    listing = invoke("models", "list")
    assert listing.exit_code == 0
    assert "churn" in listing.stdout
    assert "│ 2 " in listing.stdout

    shown = invoke("models", "show", "churn@1")
    assert shown.exit_code == 0
    assert "churn@1" in shown.stdout
    assert "team=risk" in shown.stdout
    assert run_id in shown.stdout

    versions = invoke("models", "versions", "churn")
    lines = [line for line in versions.stdout.splitlines() if "sklearn" in line]
    assert len(lines) == 2


def test_bad_input_exit_codes(workspace: Workspace, trained: tuple[Any, Any]) -> None:
    from modelyard.tracking import start_run

    with start_run("nothing", workspace=workspace) as run:
        pass
    no_model = invoke("models", "register", run.id, "--name", "churn")
    assert no_model.exit_code == 1
    assert "has no logged model" in no_model.stderr

    bad_name = invoke("models", "register", run.id, "--name", "../x")
    assert bad_name.exit_code == 2
    assert "must not contain" in bad_name.stderr

    unknown = invoke("models", "show", "ghost@1")
    assert (unknown.exit_code, unknown.stderr.strip()) == (
        1,
        "error: no registered model named 'ghost'",
    )
    models.register(train(workspace, trained, f1=0.5), "churn", workspace=workspace)
    missing = invoke("models", "show", "churn@9")
    assert missing.exit_code == 1
    assert "has no version 9 (latest is churn@1)" in missing.stderr
    assert invoke("models", "alias", "churn@1", "bad alias").exit_code == 2
    assert invoke("models", "tag", "churn@1", "novalue").exit_code == 2
    assert invoke("models", "gate", "churn", "--check", "f1 >>= 1").exit_code == 2


def test_promote_refuses_with_table_then_force_is_recorded(
    workspace: Workspace, trained: tuple[Any, Any]
) -> None:
    models.register(train(workspace, trained, f1=0.75), "churn", workspace=workspace)
    assert invoke("models", "gate", "churn", "--check", "f1 >= 0.8").stdout == (
        "Gate of churn: f1 >= 0.8\n"
    )
    refused = invoke("models", "promote", "churn@1", "production")
    assert refused.exit_code == 1
    assert "FAIL" in refused.stdout
    assert "f1 = 0.75 fails >= 0.8" in refused.stdout
    assert "cannot become 'production': 1 gate check(s) failed" in refused.stderr

    forced = invoke("models", "promote", "churn@1", "production", "--force", "--reason", "demo")
    assert forced.exit_code == 0
    assert "churn@production → churn@1 [FORCED past failed checks]" in forced.stdout
    history = invoke("models", "history", "churn")
    assert "demo" in history.stdout
    assert "f1 >= 0.8: f1 = 0.75 fails" in history.stdout

    assert invoke("models", "approve", "churn@1", "--comment", "ok").stdout.startswith(
        "Approved churn@1 as "
    )
    assert invoke("models", "unalias", "churn", "production").stdout == (
        "Removed churn@production (was churn@1)\n"
    )


def test_curation_commands(workspace: Workspace, trained: tuple[Any, Any]) -> None:
    models.register(train(workspace, trained, f1=0.7), "churn", workspace=workspace)
    models.register(train(workspace, trained, f1=0.8), "churn", workspace=workspace)
    assert invoke("models", "alias", "churn@2", "staging").stdout == ("churn@staging → churn@2\n")
    assert invoke("models", "tag", "churn@1", "a=1", "b=2").stdout == "churn@1 tags: a=1, b=2\n"
    assert invoke("models", "tag", "churn@1", "--remove", "a").stdout == "churn@1 tags: b=2\n"
    assert invoke("models", "describe", "churn@1", "baseline").exit_code == 0
    assert invoke("models", "archive", "churn@2").stdout == "Archived churn@2\n"
    assert models.resolve("churn", workspace).version == 1
    assert invoke("models", "unarchive", "churn@2").stdout == "Unarchived churn@2\n"
    diff = invoke("models", "diff", "churn@1", "churn@staging")
    assert diff.exit_code == 0
    assert any(
        "f1" in line and "0.7" in line and "0.8" in line for line in diff.stdout.splitlines()
    )
    churn1 = models.resolve("churn@1", workspace)
    assert invoke("models", "trust", "churn@1").stdout == (
        f"churn@1: trusted to run its code (content {short(churn1.digest)})\n"
    )
    trusted = models.resolve("churn@1", workspace)
    assert trusted.trusted_pickle is True
    assert trusted.code_trusted
    assert trusted.trusted_digest == churn1.digest
    assert trusted.trusted_at is not None


def test_concurrent_registrations_get_distinct_versions(
    workspace: Workspace, trained: tuple[Any, Any], tmp_path: Path
) -> None:
    from modelyard.flavors import save_model

    model, x = trained
    save_model(model, tmp_path / "m", input_example=x[:5])
    got: list[int] = []
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            got.append(models.register(tmp_path / "m", "churn", workspace=workspace).version)
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(got) == [1, 2, 3, 4]


def test_export_for_serving_is_verified(workspace: Workspace, trained: tuple[Any, Any]) -> None:
    models.register(train(workspace, trained, f1=0.7), "churn", workspace=workspace)
    models.promote("churn@1", "production", workspace=workspace)
    plan = models.plan_serving("churn@production", workspace)
    assert plan.model_dir == workspace.state_dir / "serving" / "churn" / "1"
    assert plan.prediction_dir == workspace.state_dir / "predictions" / "churn"
    assert plan.allow_pickle is False
    meta = plan.model_dir / "modelyard-model.json"
    meta.chmod(0o644)
    meta.write_text("{}")  # tampered: the next export must replace it
    (plan.model_dir / "extra.txt").write_text("x")
    again = models.plan_serving("churn@1", workspace)
    assert '"flavor"' in (again.model_dir / "modelyard-model.json").read_text()
    assert not (again.model_dir / "extra.txt").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_serve_answers_v2(
    sqlite_workspace: Workspace, trained: tuple[Any, Any], tmp_path: Path
) -> None:
    pytest.importorskip("modelyard.serving.app", reason="serving runtime not available")
    httpx = pytest.importorskip("httpx")
    import modelyard.serving as serving

    if not hasattr(serving, "serve"):
        pytest.skip("serving runtime has no serve() yet")
    ws = sqlite_workspace
    models.register(train(ws, trained, f1=0.7), "churn", workspace=ws)
    models.promote("churn@1", "production", workspace=ws)
    port = _free_port()
    env = {**os.environ, "MODELYARD_WORKSPACE": str(ws.root)}
    log = tmp_path / "server.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                "from modelyard.cli.main import main; main()",
                "serve",
                "churn@production",
                "--port",
                str(port),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        # Generous: on a loaded machine imports alone take tens of seconds, and a server that
        # dies is caught at once by the poll below, so only a hung start waits this long.
        deadline = time.monotonic() + 180
        base = f"http://127.0.0.1:{port}"
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                if httpx.get(f"{base}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.1)
        _, x = trained
        body = {
            "inputs": [
                {"name": "input", "shape": [1, 3], "datatype": "FP64", "data": x[0].tolist()}
            ]
        }
        meta = httpx.get(f"{base}/v2/models/churn", timeout=60).json()
        names = [i["name"] for i in meta["inputs"]]
        if len(names) == 3:
            body = {
                "inputs": [
                    {"name": n, "shape": [1], "datatype": "FP64", "data": [v]}
                    for n, v in zip(names, x[0].tolist(), strict=True)
                ]
            }
        elif names:
            body["inputs"][0]["name"] = names[0]
        answer = httpx.post(f"{base}/v2/models/churn/infer", json=body, timeout=60)
        assert answer.status_code == 200, answer.text
        assert answer.json()["outputs"]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    logged = [p for p in (ws.state_dir / "predictions" / "churn").rglob("*") if p.is_file()]
    assert logged, "the prediction log folder stayed empty"


def test_pickled_model_loads_only_when_the_version_is_trusted(
    workspace: Workspace, trained: tuple[Any, Any], tmp_path: Path
) -> None:
    from modelyard.errors import InvalidParameter, UnsafeModel
    from modelyard.flavors import save_model

    model, x = trained
    save_model(
        model, tmp_path / "p", input_example=x[:5], flavor="sklearn-pickle", trusted_pickle=True
    )
    models.register(tmp_path / "p", "pickled", workspace=workspace)
    with pytest.raises(UnsafeModel):
        models.load("pickled@1", workspace)
    with pytest.raises(InvalidParameter, match="pickle trust comes from the registered version"):
        models.serve("pickled@1", allow_pickle=True, workspace=workspace)
    result = invoke(
        "models", "register", str(tmp_path / "p"), "--name", "pickled", "--trust-pickle"
    )
    assert result.exit_code == 0
    trusted = models.resolve("pickled@2", workspace)
    assert trusted.trusted_pickle is True
    assert trusted.trusted_by == expected_actor(workspace)
    loaded = models.load("pickled@2", workspace)
    assert loaded.predict(x[:2]) is not None
