"""The ``local`` target end to end: gunicorn on a free port, a rollout under load that loses
no request, automatic rollback of a version that cannot start, rollback, status, logs, stop."""

from __future__ import annotations

import re
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from _deploy_helpers import Load, register_broken, register_churn
from conftest_remote import start_server
from modelyard import deploy
from modelyard.cli.main import cli
from modelyard.deploy.local import log_tail
from modelyard.deploy.probe import free_port, require_free_port
from modelyard.errors import DeployError, RolloutFailed
from modelyard.workspace import Workspace

pytest.importorskip("gunicorn")
pytest.importorskip("sklearn")
pytestmark = pytest.mark.slow


@pytest.fixture
def service(sqlite_workspace: Workspace) -> Iterator[tuple[Workspace, int]]:
    port = free_port()
    yield sqlite_workspace, port
    if sqlite_workspace.store.deployments.find("churn-api") is not None:
        deploy.stop("churn-api", workspace=sqlite_workspace)


def test_rollout_rollback_and_a_broken_version(service: tuple[Workspace, int]) -> None:
    ws, port = service
    v1, v2 = register_churn(ws, 2)
    broken = register_broken(ws)
    url = f"http://127.0.0.1:{port}"

    dep = deploy.deploy(
        deploy.DeploySpec(v1, "churn-api", target="local", port=port, replicas=2), workspace=ws
    )
    assert dep.status == "running"
    assert dep.current is not None
    assert dep.current.model_ref == v1
    with pytest.raises(DeployError, match="already in use"):
        require_free_port(port)  # it really listens

    with Load(url) as load:
        deadline = time.monotonic() + 30
        while load.ok < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        dep = deploy.deploy(
            deploy.DeploySpec(v2, "churn-api", target="local", port=port, replicas=2),
            workspace=ws,
        )
        before = load.ok
        deadline = time.monotonic() + 30
        while load.ok < before + 20 and time.monotonic() < deadline:
            time.sleep(0.05)
    assert load.failed == [], load.failed[:3]
    assert load.ok > 40
    assert load.versions == {"1", "2"}  # the switch happened while the load ran
    assert dep.current is not None
    assert dep.current.model_ref == v2

    st = deploy.status("churn-api", workspace=ws)
    assert st.healthy
    assert [r.version for r in st.replicas] == ["2"]
    assert st.traffic.requests > 0
    assert st.traffic.errors == 0

    # A version that cannot load: the command fails, the old one keeps serving.
    with pytest.raises(RolloutFailed, match="never became ready") as info:
        deploy.deploy(
            deploy.DeploySpec(
                broken, "churn-api", target="local", port=port, replicas=2, timeout_s=60
            ),  # fmt: skip
            workspace=ws,
        )
    assert "refuses to load" in info.value.logs
    dep = ws.store.deployments.get("churn-api")
    assert dep.status == "failed"
    assert dep.current is not None
    assert dep.current.model_ref == v2
    assert dep.revisions[-1].status == "failed"
    assert "refuses to load" in (dep.revisions[-1].detail or "")
    assert deploy.status("churn-api", workspace=ws).replicas[0].version == "2"

    runner = CliRunner()
    result = runner.invoke(cli, ["deploy", "rollback", "churn-api"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == "churn-api rolled back to churn@1"
    result = runner.invoke(cli, ["deployments", "status", "churn-api"])
    assert result.exit_code == 0, result.output
    assert re.search(r"^version: +churn@1 \(revision 4\)$", result.output, re.M)
    assert re.search(r"^requests: +\d+ ", result.output, re.M)
    assert re.search(r"^health: +healthy$", result.output, re.M)
    result = runner.invoke(cli, ["deployments", "list"])
    assert "churn-api" in result.output
    assert "churn@1" in result.output
    result = runner.invoke(cli, ["deployments", "logs", "churn-api", "-n", "200"])
    assert "Booting worker" in result.output

    result = runner.invoke(cli, ["deployments", "stop", "churn-api"])
    assert result.exit_code == 0
    assert result.output.strip() == "Stopped churn-api"
    require_free_port(port)  # the port is free again
    result = runner.invoke(cli, ["lineage", v1])
    assert "deployed_as → deployment churn-api (local, stopped, serving churn@1)" in result.output


def test_a_first_deploy_that_cannot_start_fails_cleanly(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    broken = register_broken(ws)
    port = free_port()
    result = CliRunner().invoke(
        cli, ["deploy", broken, "--target", "local", "--port", str(port), "--timeout", "60"]
    )
    assert result.exit_code == 1
    assert "never became ready" in result.output
    dep = ws.store.deployments.get("churn")
    assert dep.status == "failed"
    assert dep.current is None
    require_free_port(port)  # nothing left behind


def test_status_totals_every_worker(
    service: tuple[Workspace, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two gunicorn workers answer requests and scrapes in turn; one scrape, hence one status,
    counts every request. Their shared metrics folder is private and leaves with the master."""
    ws, port = service
    server_tmp = tmp_path / "server-tmp"
    server_tmp.mkdir()
    monkeypatch.setenv("TMPDIR", str(server_tmp))  # where the master makes the folder
    monkeypatch.setenv("MODELYARD_SERVE_LOG_FLUSH_SECONDS", "0.05")
    (v1,) = register_churn(ws, 1)
    deploy.deploy(
        deploy.DeploySpec(v1, "churn-api", target="local", port=port, replicas=2), workspace=ws
    )
    url = f"http://127.0.0.1:{port}/v2/models/churn/infer"
    body = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 3],
                        "data": [0.1, 0.2, 0.3]}]}  # fmt: skip
    # Bound to loopback, the workers answer only loopback names (DNS rebinding).
    rebound = httpx.post(url, json=body, headers={"Host": "evil.example"}, timeout=10)
    assert rebound.status_code == 400
    folder = ws.state_dir / "deployments" / "churn-api"
    segments, log = folder / "predlog" / "predictions", folder / "server.log"
    sent = 0
    deadline = time.monotonic() + 60
    # New connections until both workers have answered (their log segments carry their pid:
    # predictions-<stamp>-<host>-<pid>-<seq>-<token>).
    while len({p.name.split("-")[-3] for p in segments.glob("predictions-*")}) < 2 or sent < 40:
        assert time.monotonic() < deadline, "the requests never reached both workers"
        with httpx.Client(timeout=10) as client:
            for _ in range(5):
                answer = client.post(url, json=body)
                assert answer.status_code == 200, (answer.text, log_tail(log))
                sent += 1

    def requests() -> float:
        return deploy.status("churn-api", workspace=ws).traffic.requests

    deadline = time.monotonic() + 30
    while requests() != sent:  # a worker counts a request just after answering it
        assert time.monotonic() < deadline, f"status never reported all {sent} requests"
        time.sleep(0.02)
    for _ in range(10):  # whichever worker answers the scrape
        st = deploy.status("churn-api", workspace=ws)
        assert st.traffic.requests == sent
        assert st.traffic.errors == 0
        assert st.ready_replicas == 2
    result = CliRunner().invoke(cli, ["deployments", "status", "churn-api"])
    assert result.exit_code == 0, result.output
    assert re.search(rf"^requests: +{sent} \(", result.output, re.M)
    assert re.search(r"^replicas: +2/2 ready$", result.output, re.M)

    (metrics_dir,) = server_tmp.glob("modelyard-metrics-*")
    assert stat.S_IMODE(metrics_dir.stat().st_mode) == 0o700
    deploy.stop("churn-api", workspace=ws)
    assert list(server_tmp.glob("modelyard-metrics-*")) == []


V2_ROW = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 3],
                     "data": [0.1, 0.2, 0.3]}]}  # fmt: skip


def _protected(url: str, token: str | None) -> list[int]:
    """Statuses of the prediction routes (V2 infer, /invocations, /v1/feedback)."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    with httpx.Client(base_url=url, headers=headers, timeout=10) as client:
        return [
            client.post("/v2/models/churn/infer", json=V2_ROW).status_code,
            client.post("/invocations", json={"instances": [[0.1, 0.2, 0.3]]}).status_code,
            client.post("/v1/feedback", json={"request_id": "r1", "label": 1}).status_code,
        ]


def _open_routes(url: str) -> list[int]:
    with httpx.Client(base_url=url, timeout=10) as client:
        return [client.get(p).status_code for p in ("/v2/health/ready", "/v2/models/churn",
                                                     "/metrics")]  # fmt: skip


def test_predict_tokens_hold_through_a_rollout_and_a_rollback(
    service: tuple[Workspace, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`deploy --auth-url` with a real team server: the prediction routes need one of its
    predict tokens, health, metadata and metrics stay open; a rollout that does not mention
    the URL, a rollback, status and the monitor's availability check all work with it on; and
    the deployment's record decides, not the environment of the shell that deployed it."""
    from modelyard.monitor.availability import check_availability

    ws, port = service
    url = f"http://127.0.0.1:{port}"
    # A server that answers nothing: were this leaking into the workers, every token would 503.
    monkeypatch.setenv("MODELYARD_SERVE_AUTH_URL", f"http://127.0.0.1:{free_port()}")
    team_ws, _ = Workspace.init(tmp_path / "team", environ={})
    team = start_server(team_ws)
    try:
        v1, v2 = register_churn(ws, 2)
        token, reader = team.token("predict"), team.token("read")
        runner = CliRunner()
        result = runner.invoke(cli, ["deploy", v1, "--target", "local", "--name", "churn-api",
                                     "--port", str(port), "--auth-url", team.url])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert result.output.splitlines()[-1] == (
            f"prediction routes need a predict token of {team.url}"
        )
        assert _protected(url, None) == [401, 401, 401]
        assert _protected(url, reader) == [403, 403, 403]
        assert _protected(url, token) == [200, 200, 200]
        assert _open_routes(url) == [200, 200, 200]

        # A new version without --auth-url keeps it, and no tokened request fails meanwhile.
        with Load(url, token=token) as load:
            deadline = time.monotonic() + 30
            while load.ok < 20 and time.monotonic() < deadline:
                time.sleep(0.05)
            deploy.deploy(deploy.DeploySpec(v2, "churn-api", target="local", port=port),
                          workspace=ws)  # fmt: skip
            before = load.ok
            deadline = time.monotonic() + 30
            while load.ok < before + 20 and time.monotonic() < deadline:
                time.sleep(0.05)
        assert load.failed == [], load.failed[:3]
        assert load.versions == {"1", "2"}
        assert _protected(url, None) == [401, 401, 401]

        result = runner.invoke(cli, ["deploy", "rollback", "churn-api"])
        assert result.exit_code == 0, result.output
        assert _protected(url, None) == [401, 401, 401]
        answer = httpx.post(f"{url}/v2/models/churn/infer", json=V2_ROW,
                            headers={"authorization": f"Bearer {token}"})  # fmt: skip
        assert (answer.status_code, answer.json()["model_version"]) == (200, "1")

        result = runner.invoke(cli, ["deployments", "status", "churn-api"])
        assert result.exit_code == 0, result.output
        assert re.search(r"^health: +healthy$", result.output, re.M)
        assert re.search(rf"^auth: +predict tokens of {re.escape(team.url)}$", result.output,
                         re.M)  # fmt: skip
        assert check_availability([url]).healthy

        # Turned off on purpose; the exported MODELYARD_SERVE_AUTH_URL does not turn it back on.
        result = runner.invoke(cli, ["deploy", v2, "--target", "local", "--name", "churn-api",
                                     "--port", str(port), "--auth-url", ""])  # fmt: skip
        assert result.exit_code == 0, result.output
        assert "predict token" not in result.output
        assert _protected(url, None) == [200, 200, 200]
        assert deploy.status("churn-api", workspace=ws).auth_url is None
    finally:
        team.stop()
        team_ws.close()


def test_the_monitor_reads_the_deployments_own_log(
    service: tuple[Workspace, int], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The log folder is the deployment record's, not whichever folder exists: a ``modelyard
    serve`` of the same model (which makes ``.modelyard/predictions/churn``) leaves the
    monitor reading the deployment's traffic."""
    from modelyard.models.serve import plan_serving
    from modelyard.monitor.check import gather_reports
    from modelyard.monitor.policy import load_config

    ws, port = service
    monkeypatch.setenv("MODELYARD_SERVE_LOG_FLUSH_SECONDS", "0.05")
    (v1,) = register_churn(ws, 1)
    deploy.deploy(
        deploy.DeploySpec(v1, "churn-api", target="local", port=port, replicas=1), workspace=ws
    )
    plan_serving(v1, ws)  # what `modelyard serve churn@1` does first
    assert (ws.state_dir / "predictions" / "churn").is_dir()
    dep = ws.store.deployments.get("churn-api")
    assert dep.config is not None
    assert dep.config["log_dir"] == str(ws.state_dir / "deployments" / "churn-api" / "predlog")
    with httpx.Client(timeout=10) as client:
        for _ in range(20):
            answer = client.post(f"http://127.0.0.1:{port}/v2/models/churn/infer", json=V2_ROW)
            assert answer.status_code == 200, answer.text
    config = load_config({"window": 20})
    deadline = time.monotonic() + 30
    while not (observed := gather_reports(ws, dep, config)).windows[0].get("requests"):
        assert time.monotonic() < deadline, f"the monitor never saw the traffic: {observed}"
        time.sleep(0.1)
    assert observed.windows[-1]["requests"] == 20.0
    assert observed.windows[-1]["requests_served"] == 20.0  # from the server's /metrics
