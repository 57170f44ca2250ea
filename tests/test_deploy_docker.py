"""The ``docker`` target: replicas behind HAProxy, a rollout under load that loses nothing, a
version whose container exits at start rolled back automatically, rollback, status, stop."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator

import httpx
import pytest
from click.testing import CliRunner

from _deploy_helpers import Load, register_broken, register_churn
from modelyard import deploy
from modelyard.cli.main import cli
from modelyard.deploy.probe import free_port, require_free_port
from modelyard.errors import DeployError, RolloutFailed
from modelyard.images import DockerEngine
from modelyard.packaging import build_model_image
from modelyard.workspace import Workspace

pytest.importorskip("sklearn")
pytestmark = [pytest.mark.docker, pytest.mark.slow]
# Unique per run: the deployment names its network, replicas and proxy, and two test runs
# on one engine (parallel sessions) must not take over or remove each other's containers.
NAME = f"pytest-churn-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def images(
    engine: DockerEngine,
    base_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Workspace, list[str]]]:
    root = tmp_path_factory.mktemp("dock") / "ws"
    ws, _ = Workspace.init(root, environ={})
    refs = [*register_churn(ws, 2), register_broken(ws)]
    for ref in refs:
        build_model_image(ref, workspace=ws, base_image=base_image, engine=engine)
    yield ws, refs
    if ws.store.deployments.find(NAME) is not None:
        deploy.stop(NAME, workspace=ws)
    ws.close()


@pytest.mark.timeout(1200)  # three image builds in the fixture, on a loaded machine
def test_docker_rollout_without_loss_and_automatic_rollback(
    images: tuple[Workspace, list[str]],
    engine: DockerEngine,
) -> None:
    ws, (v1, v2, broken) = images
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    dep = deploy.deploy(
        deploy.DeploySpec(v1, NAME, target="docker", port=port, replicas=2), workspace=ws
    )
    assert dep.current is not None
    assert dep.current.image_ref == "modelyard/churn:1"
    with pytest.raises(DeployError, match="already in use"):
        require_free_port(port)
    with Load(url) as load:
        deadline = time.monotonic() + 30
        while load.ok < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        deploy.deploy(
            deploy.DeploySpec(v2, NAME, target="docker", port=port, replicas=2), workspace=ws
        )
        before = load.ok
        while load.ok < before + 20 and time.monotonic() < deadline + 30:
            time.sleep(0.05)
    assert load.failed == [], load.failed[:3]
    assert load.versions == {"1", "2"}
    st = deploy.status(NAME, workspace=ws)
    assert [r.version for r in st.replicas] == ["2", "2"]
    assert st.healthy
    assert st.traffic.requests > 0

    with pytest.raises(RolloutFailed, match="failed to start on docker") as info:
        deploy.deploy(
            deploy.DeploySpec(
                broken, NAME, target="docker", port=port, replicas=1, timeout_s=60
            ),  # fmt: skip
            workspace=ws,
        )
    assert "refuses to load" in info.value.logs
    dep = ws.store.deployments.get(NAME)
    assert dep.status == "failed"
    assert dep.current is not None
    assert dep.current.model_ref == v2
    assert [r.version for r in deploy.status(NAME, workspace=ws).replicas] == ["2", "2"]

    runner = CliRunner()
    result = runner.invoke(cli, ["-C", str(ws.root), "deploy", "rollback", NAME])
    assert result.exit_code == 0, result.output
    assert f"{NAME} rolled back to churn@1" in result.output
    result = runner.invoke(cli, ["-C", str(ws.root), "deployments", "status", NAME])
    assert "replicas:   2/2 ready" in result.output
    assert "image:      modelyard/churn:1" in result.output
    result = runner.invoke(cli, ["-C", str(ws.root), "deployments", "stop", NAME])
    assert result.exit_code == 0
    require_free_port(port)
    assert (
        engine.run(["ps", "-aq", "--filter", f"label=io.modelyard.deployment={NAME}"]).stdout == b""
    )


@pytest.fixture
def one_image(
    engine: DockerEngine,
    base_image: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Workspace, str]]:
    root = tmp_path_factory.mktemp("dock1") / "ws"
    ws, _ = Workspace.init(root, environ={})
    (ref,) = register_churn(ws, 1)
    build_model_image(ref, workspace=ws, base_image=base_image, engine=engine)
    yield ws, ref
    if ws.store.deployments.find(NAME) is not None:
        deploy.stop(NAME, workspace=ws)
    ws.close()


@pytest.mark.timeout(900)  # the image build, on a loaded machine
def test_the_monitor_counts_every_replicas_traffic(one_image: tuple[Workspace, str]) -> None:
    """Requests spread over two replicas by the proxy: the monitor scrapes each replica and sums
    (the proxy's own ``/metrics`` would answer for one replica at a time), and reads the
    prediction log the rollout recorded."""
    from modelyard.monitor.check import gather_reports
    from modelyard.monitor.policy import load_config

    ws, ref = one_image
    port = free_port()
    spec = deploy.DeploySpec(ref, NAME, target="docker", port=port, replicas=2)
    deploy.deploy(spec, workspace=ws)
    body = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [1, 3],
                        "data": [0.1, 0.2, 0.3]}]}  # fmt: skip
    sent = 40
    for _ in range(sent):  # a new connection each: the proxy balances connections
        answer = httpx.post(f"http://127.0.0.1:{port}/v2/models/churn/infer", json=body)
        assert answer.status_code == 200, answer.text
    dep = ws.store.deployments.get(NAME)
    config = load_config({"window": sent})
    deadline = time.monotonic() + 60
    while (observed := gather_reports(ws, dep, config)).windows[-1].get("requests") != sent:
        assert time.monotonic() < deadline, f"the monitor never saw all {sent}: {observed}"
        time.sleep(0.2)
    availability = observed.objects["availability"]
    assert len(availability.endpoints) == 2  # each replica, not the proxy
    assert all(e.requests > 0 for e in availability.endpoints)  # both got traffic
    assert observed.windows[-1]["requests_served"] == sent
