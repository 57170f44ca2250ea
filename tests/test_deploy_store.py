"""Deployment records, their revisions and events on both store backends, and the pieces of
deploy that need no running service: specs, metrics parsing, the proxy config, bad input."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from modelyard.cli.main import cli
from modelyard.deploy import DeploySpec
from modelyard.deploy.probe import require_free_port
from modelyard.deploy.proxy import render_haproxy_config
from modelyard.deploy.traffic import traffic_from_metrics
from modelyard.errors import AlreadyExists, DeployError, InvalidName, InvalidParameter, NotFound
from modelyard.workspace import Workspace


def test_revisions_move_current_only_on_success(workspace: Workspace) -> None:
    repo = workspace.store.deployments
    repo.create("churn-api", "local", port=8080, replicas=1, config={})
    with pytest.raises(AlreadyExists):
        repo.create("churn-api", "local", port=8080, replicas=1, config={})
    r1 = repo.add_revision(
        "churn-api", model_name="churn", model_version=1, image_ref=None, image_digest=None,
        replicas=1,
    )  # fmt: skip
    assert (r1.revision, r1.status) == (1, "pending")
    dep = repo.finish_revision("churn-api", 1, ok=True)
    assert (dep.status, dep.revision, dep.current and dep.current.model_ref) == (
        "running", 1, "churn@1",
    )  # fmt: skip
    r2 = repo.add_revision(
        "churn-api", model_name="churn", model_version=2, image_ref="modelyard/churn:2",
        image_digest="sha256:" + "a" * 64, replicas=2,
    )  # fmt: skip
    dep = repo.finish_revision("churn-api", r2.revision, ok=False, detail="boom\nlast line")
    # A failed rollout keeps the previous revision current.
    assert dep.status == "failed"
    assert dep.current is not None
    assert dep.current.model_ref == "churn@1"
    assert [r.status for r in dep.revisions] == ["active", "failed"]
    assert dep.revisions[1].detail == "boom\nlast line"
    r3 = repo.add_revision(
        "churn-api", model_name="churn", model_version=3, image_ref=None, image_digest=None,
        replicas=1,
    )  # fmt: skip
    dep = repo.finish_revision("churn-api", r3.revision, ok=True)
    assert [r.status for r in dep.revisions] == ["superseded", "failed", "active"]
    repo.add_event("churn-api", "rollout", "revision 3: churn@3")
    assert [e.kind for e in repo.events("churn-api")] == ["rollout"]
    assert [d.name for d in repo.all()] == ["churn-api"]
    with pytest.raises(NotFound, match="no deployment named 'nope'"):
        repo.get("nope")


def test_stopping_a_deployment_that_does_not_exist(workspace: Workspace) -> None:
    result = CliRunner().invoke(cli, ["deployments", "stop", "ghost"])
    assert result.exit_code == 1
    assert "no deployment named 'ghost'" in result.output


def test_rollback_without_history_is_a_clear_error(workspace: Workspace) -> None:
    workspace.store.deployments.create("svc", "local", port=8080, replicas=1, config={})
    result = CliRunner().invoke(cli, ["deploy", "rollback", "svc"])
    assert result.exit_code == 1
    assert "has never served a version" in result.output


def test_spec_checks_its_values() -> None:
    with pytest.raises(InvalidName):
        DeploySpec("churn@1", "../etc")
    with pytest.raises(InvalidParameter, match="unknown target"):
        DeploySpec("churn@1", "api", target="mainframe")
    with pytest.raises(InvalidParameter, match="replicas"):
        DeploySpec("churn@1", "api", replicas=0)


def test_port_in_use_is_refused() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        port = sock.getsockname()[1]
        with pytest.raises(DeployError, match=f"port {port} on 127.0.0.1 is already in use"):
            require_free_port(port)


METRICS = """\
# HELP modelyard_requests_total HTTP requests by route and status
# TYPE modelyard_requests_total counter
modelyard_requests_total{route="/v2/models/{name}/infer",status="200"} 90.0
modelyard_requests_total{route="/v2/models/{name}/infer",status="500"} 10.0
modelyard_requests_total{route="/v2/health/ready",status="200"} 1000.0
# HELP modelyard_request_duration_seconds Request latency by route
# TYPE modelyard_request_duration_seconds histogram
modelyard_request_duration_seconds_bucket{le="0.005",route="/v2/models/{name}/infer"} 50.0
modelyard_request_duration_seconds_bucket{le="0.01",route="/v2/models/{name}/infer"} 98.0
modelyard_request_duration_seconds_bucket{le="0.1",route="/v2/models/{name}/infer"} 100.0
modelyard_request_duration_seconds_bucket{le="+Inf",route="/v2/models/{name}/infer"} 100.0
modelyard_request_duration_seconds_count{route="/v2/models/{name}/infer"} 100.0
modelyard_request_duration_seconds_sum{route="/v2/models/{name}/infer"} 0.5
"""


def test_traffic_is_summed_over_replicas_without_probes() -> None:
    stats = traffic_from_metrics([METRICS, METRICS])
    assert (stats.requests, stats.errors) == (200.0, 20.0)
    assert stats.error_rate == pytest.approx(0.1)
    assert (stats.p50_s, stats.p99_s) == (0.005, 0.1)
    assert traffic_from_metrics([]).p50_s is None


def test_proxy_config_health_checks_and_retries() -> None:
    text = render_haproxy_config(["api-2-aaaaaa", "api-2-bbbbbb"])
    assert "server r1 api-2-aaaaaa:8080 check" in text
    assert "server r2 api-2-bbbbbb:8080 check" in text
    assert "option httpchk GET /v2/health/ready" in text
    assert "retry-on all-retryable-errors" in text
    with pytest.raises(InvalidParameter):
        render_haproxy_config(["evil;rm -rf /"])


def _pushed_version(ws: Workspace) -> str:
    from _deploy_helpers import register_churn

    pytest.importorskip("sklearn")
    (ref,) = register_churn(ws, 1)
    digest = "sha256:" + "b" * 64
    ws.store.models.set_image(
        "churn", 1, image_id="sha256:" + "c" * 64, image_digest=digest, image_size=1,
        image_ref=f"registry.example/ml/churn@{digest}",
    )  # fmt: skip
    return ref


def test_kubernetes_dry_run_prints_manifests_and_records_nothing(
    sqlite_workspace: Workspace,
) -> None:
    ref = _pushed_version(sqlite_workspace)
    result = CliRunner().invoke(
        cli, ["deploy", ref, "--target", "kubernetes", "--namespace", "ml", "--replicas", "2",
              "--min", "2", "--max", "10", "--cpu-target", "70", "--dry-run", "-o", "yaml"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    for kind in ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        assert f"kind: {kind}" in result.output
    assert "registry.example/ml/churn@sha256:" in result.output
    assert sqlite_workspace.store.deployments.all() == []


def test_kubernetes_rollout_is_recorded_with_lineage(sqlite_workspace: Workspace) -> None:
    from modelyard.deploy import deploy_kubernetes
    from modelyard.deploy.kubernetes import FakeKubeApi

    ref = _pushed_version(sqlite_workspace)
    plan = deploy_kubernetes(
        ref, "churn-api", namespace="ml", api=FakeKubeApi(), timeout_s=30,
        workspace=sqlite_workspace,
    )  # fmt: skip
    assert plan.deployment is not None
    assert plan.deployment.target == "kubernetes"
    assert plan.deployment.current is not None
    assert plan.deployment.current.image_digest == "sha256:" + "b" * 64
    edges = sqlite_workspace.store.lineage.edges_from("model_version", "churn@1")
    assert ("deployment", "churn-api", "deployed_as") in {
        (e.target_type, e.target_id, e.relation) for e in edges
    }


def test_kubernetes_settings_are_checked_before_anything_is_recorded(
    sqlite_workspace: Workspace,
) -> None:
    from modelyard.deploy import KubernetesOptions, deploy
    from modelyard.errors import InvalidName

    ref = _pushed_version(sqlite_workspace)
    with pytest.raises(InvalidName, match="not a valid Kubernetes namespace"):
        KubernetesOptions(namespace="ML_team")
    options = KubernetesOptions(namespace="ml", min_replicas=5, max_replicas=2)
    with pytest.raises(InvalidParameter, match="min_replicas 5 is larger than max_replicas 2"):
        deploy(DeploySpec(ref, "churn-api", target="kubernetes", options=options),
               workspace=sqlite_workspace)  # fmt: skip
    assert sqlite_workspace.store.deployments.find("churn-api") is None


def test_kubernetes_needs_a_pushed_image(sqlite_workspace: Workspace) -> None:
    from _deploy_helpers import register_churn

    pytest.importorskip("sklearn")
    (ref,) = register_churn(sqlite_workspace, 1)
    result = CliRunner().invoke(cli, ["deploy", ref, "--target", "kubernetes", "--dry-run"])
    assert result.exit_code == 1
    assert "has no pushed image" in result.output


def test_two_rollouts_of_one_deployment_do_not_run_at_once(workspace: Workspace) -> None:
    """Found in review: concurrent rollouts each took the other's replicas for the old version."""
    from _deploy_helpers import register_churn
    from modelyard.deploy import deploy

    register_churn(workspace, versions=1)
    assert workspace.store.monitoring.acquire_lease("deploy:api", "someone-else", 60)
    with pytest.raises(DeployError, match="another rollout of 'api' is in progress"):
        deploy(DeploySpec("churn@1", "api", port=18931), workspace=workspace)
    assert workspace.store.deployments.find("api") is None
    assert workspace.store.monitoring.release_lease("deploy:api", "someone-else")


def _pushed_versions(ws: Workspace, count: int) -> dict[str, str]:
    """``count`` registered versions of ``churn``, each with its own pushed image."""
    from _deploy_helpers import register_churn

    pytest.importorskip("sklearn")
    images = {}
    for ref in register_churn(ws, count):
        number = int(ref.split("@")[1])
        digest = "sha256:" + str(number) * 64
        image = f"registry.example/ml/churn@{digest}"
        ws.store.models.set_image(
            "churn", number, image_id="sha256:" + str(number + 4) * 64, image_digest=digest,
            image_size=1, image_ref=image,
        )  # fmt: skip
        images[ref] = image
    return images


def test_kubernetes_rollback_goes_back_through_the_deploy_path(
    sqlite_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """v1 then v2 on Kubernetes; `deploy rollback` serves v1 again as a revision of its own,
    with the namespace and autoscaling the deployment was given; a retrain's rollout takes the
    same path."""
    from modelyard.deploy import deploy_kubernetes, rollback
    from modelyard.deploy.kubernetes import OfficialKubeApi
    from modelyard.deploy.kubernetes.apply import REVISION
    from modelyard.models import resolve
    from modelyard.monitor.retrain import default_rollout
    from modelyard.testing import FakeKubeApi

    ws = sqlite_workspace
    images = _pushed_versions(ws, 2)
    api = FakeKubeApi(steps_to_ready=1)
    for ref in images:
        deploy_kubernetes(
            ref, "churn-api", namespace="ml", replicas=2, max_replicas=6, api=api,
            timeout_s=30, workspace=ws,
        )  # fmt: skip
    assert api.image_of("Deployment", "churn-api", "ml") == images["churn@2"]

    dep = rollback("churn-api", workspace=ws, api=api, timeout_s=30)
    assert api.image_of("Deployment", "churn-api", "ml") == images["churn@1"]
    live = api.get("Deployment", "churn-api", "ml")
    assert live is not None
    assert live["metadata"]["annotations"][REVISION] == "3"  # the cluster's history too
    hpa = api.get("HorizontalPodAutoscaler", "churn-api", "ml")
    assert hpa is not None
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
    assert dep.current is not None
    assert dep.current.model_ref == "churn@1"
    assert dep.current.image_ref == images["churn@1"]
    assert [(r.revision, r.model_ref, r.status) for r in dep.revisions] == [
        (1, "churn@1", "superseded"),
        (2, "churn@2", "superseded"),
        (3, "churn@1", "active"),
    ]
    events = [(e.kind, e.message) for e in ws.store.deployments.events("churn-api")]
    assert ("rollback", "from churn@2 back to churn@1") in events
    assert events[-1] == ("ready", "revision 3 serving churn@1")

    # The CLI and the monitor reach the cluster through the official client: stand the fake in.
    monkeypatch.setattr(OfficialKubeApi, "from_config", classmethod(lambda cls, **kw: api))
    default_rollout(ws, ws.store.deployments.get("churn-api"), resolve("churn@2", ws))
    assert api.image_of("Deployment", "churn-api", "ml") == images["churn@2"]
    result = CliRunner().invoke(cli, ["deploy", "rollback", "churn-api", "--timeout", "30"])
    assert result.exit_code == 0, result.output
    assert result.output == "churn-api rolled back to churn@1\n"
    assert api.image_of("Deployment", "churn-api", "ml") == images["churn@1"]
    dep = ws.store.deployments.get("churn-api")
    assert [(r.revision, r.model_ref) for r in dep.revisions][3:] == [
        (4, "churn@2"),
        (5, "churn@1"),
    ]


# ---- predict tokens: --auth-url ------------------------------------------------------------

TEAM = "http://team.internal:5500"
LOOPBACK = ["http://127.0.0.1:5500", "http://localhost:5500", "http://[::1]:5500",
            "http://127.0.1.1", "http://0.0.0.0:5500", "http://api.localhost:5500"]  # fmt: skip


def test_the_auth_url_is_checked_as_the_model_server_checks_it() -> None:
    from modelyard.deploy.spec import AUTH_URL_ENV, TARGETS
    from modelyard.errors import ConfigError
    from modelyard.serving import ServeConfig

    # What the replicas are given is what their server reads.
    assert ServeConfig.from_env({AUTH_URL_ENV: TEAM}).auth_url == TEAM
    for bad, message in [
        ("ftp://team.internal", "must be the team server's http(s) URL"),
        ("http://bot:secret@team.internal", "must not hold credentials"),
        ("http://team.internal/?next=1", "must not have a query or fragment"),
        ("http://team.internal:port", "is not a URL"),
    ]:
        with pytest.raises(ConfigError, match=re.escape(message)):
            ServeConfig(auth_url=bad)
        for target in TARGETS:
            with pytest.raises(InvalidParameter, match=re.escape(message)):
                DeploySpec("churn@1", "api", target=target, auth_url=bad)
    assert DeploySpec("churn@1", "api", auth_url="").auth_url == ""  # off


def test_a_loopback_auth_url_is_refused_where_replicas_run_in_containers() -> None:
    for url in LOOPBACK:
        assert DeploySpec("churn@1", "api", target="local", auth_url=url).auth_url == url
        with pytest.raises(InvalidParameter, match="a replica container's loopback is itself"):
            DeploySpec("churn@1", "api", target="docker", auth_url=url)
        with pytest.raises(InvalidParameter, match="a pod's loopback is itself"):
            DeploySpec("churn@1", "api", target="kubernetes", auth_url=url)
    for url in (TEAM, "https://10.0.0.7", "http://host.docker.internal:5500"):
        assert DeploySpec("churn@1", "api", target="docker", auth_url=url).auth_url == url


def test_deploy_cli_refuses_a_loopback_auth_url_for_docker(sqlite_workspace: Workspace) -> None:
    result = CliRunner().invoke(
        cli, ["deploy", "churn@1", "--target", "docker", "--name", "api",
              "--auth-url", "http://127.0.0.1:5500"],
    )  # fmt: skip
    assert result.exit_code == 2, result.output
    text = " ".join(result.output.split())
    assert "'http://127.0.0.1:5500' is a loopback address" in text
    assert "host.docker.internal" in text
    assert sqlite_workspace.store.deployments.all() == []


def test_docker_replicas_get_the_auth_url_in_their_environment(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from modelyard.deploy.docker import replica_run_args
    from modelyard.store.models_entities import ModelVersion

    version = ModelVersion(
        id=1, name="churn", version=2, digest="sha256:" + "d" * 64, flavor="sklearn",
        signature=None, requirements=None, run_id=None, source=None, description=None,
        status="ready", trusted_pickle=False, trusted_by=None, created_at=datetime.now(UTC),
        created_by=None,
    )  # fmt: skip
    plain = replica_run_args("api", "api-2-abc123", version, "img:2", tmp_path)
    assert not any("AUTH_URL" in arg for arg in plain)
    assert "--add-host" not in plain
    args = replica_run_args("api", "api-2-abc123", version, "img:2", tmp_path, TEAM)
    assert args[args.index("-e") + 1] == f"MODELYARD_SERVE_AUTH_URL={TEAM}"
    assert args[-1] == "img:2"  # options before the image: after it they would be its arguments
    assert "--add-host" not in args
    # The name Docker Desktop provides is mapped on Docker Engine too.
    host = replica_run_args("api", "c", version, "img:2", None, "http://host.docker.internal:5500")
    assert host[host.index("--add-host") + 1] == "host.docker.internal:host-gateway"
    assert host.index("--add-host") < host.index("img:2")


def test_the_auth_url_is_recorded_and_every_later_rollout_keeps_it(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rollout that does not name an auth URL keeps the deployment's (so forgetting the flag
    never opens a protected service); rollbacks and retrains go through redeploy, which passes
    the recorded one; '' turns tokens off. The target's own rollout is stubbed out here (the
    local target's test runs it for real)."""
    from _deploy_helpers import register_churn
    from modelyard.deploy import deploy, recorded_auth_url, redeploy, rollback, service
    from modelyard.deploy.local import LocalTarget
    from modelyard.deploy.target import Rollout, RolloutRequest

    pytest.importorskip("sklearn")
    register_churn(workspace, 2)
    rolled: list[tuple[str, str | None]] = []

    def rollout(self: LocalTarget, request: RolloutRequest) -> Rollout:
        rolled.append((request.version.ref, request.auth_url))
        return Rollout()

    monkeypatch.setattr(LocalTarget, "rollout", rollout)
    monkeypatch.setattr(service, "_precheck_port", lambda port: None)
    deploy(DeploySpec("churn@1", "api", port=18933, auth_url=TEAM), workspace=workspace)
    deploy(DeploySpec("churn@2", "api", port=18933), workspace=workspace)
    rollback("api", workspace=workspace)
    redeploy("api", "churn@2", workspace=workspace)  # what a retrain's rollout calls
    assert rolled == [("churn@1", TEAM), ("churn@2", TEAM), ("churn@1", TEAM), ("churn@2", TEAM)]
    assert recorded_auth_url(workspace.store.deployments.get("api")) == TEAM

    deploy(DeploySpec("churn@1", "api", port=18933, auth_url=""), workspace=workspace)
    redeploy("api", "churn@2", workspace=workspace)
    assert rolled[4:] == [("churn@1", None), ("churn@2", None)]
    assert recorded_auth_url(workspace.store.deployments.get("api")) is None


def test_kubernetes_pods_get_the_auth_url_and_a_rollback_keeps_it(
    sqlite_workspace: Workspace,
) -> None:
    import json

    from modelyard.deploy import deploy_kubernetes, rollback
    from modelyard.testing import FakeKubeApi

    ws = sqlite_workspace
    images = _pushed_versions(ws, 2)
    api = FakeKubeApi(steps_to_ready=1)

    def live() -> tuple[str, dict[str, str]]:
        deployment = api.get("Deployment", "churn-api", "ml")
        assert deployment is not None
        (container,) = deployment["spec"]["template"]["spec"]["containers"]
        return container["image"], {e["name"]: e["value"] for e in container["env"]}

    with pytest.raises(InvalidParameter, match="a pod's loopback is itself"):
        deploy_kubernetes("churn@1", "churn-api", namespace="ml", auth_url="http://localhost:1",
                          api=api, timeout_s=30, workspace=ws)  # fmt: skip
    assert api.get("Deployment", "churn-api", "ml") is None
    deploy_kubernetes("churn@1", "churn-api", namespace="ml", auth_url=TEAM, api=api,
                      timeout_s=30, workspace=ws)  # fmt: skip
    deploy_kubernetes("churn@2", "churn-api", namespace="ml", api=api, timeout_s=30,
                      workspace=ws)  # fmt: skip
    image, env = live()
    assert (image, env["MODELYARD_SERVE_AUTH_URL"]) == (images["churn@2"], TEAM)
    dep = rollback("churn-api", workspace=ws, api=api, timeout_s=30)
    image, env = live()
    assert (image, env["MODELYARD_SERVE_AUTH_URL"]) == (images["churn@1"], TEAM)
    assert (dep.config or {})["auth_url"] == TEAM

    result = CliRunner().invoke(
        cli, ["deploy", "churn@2", "--target", "kubernetes", "--namespace", "ml", "--name",
              "other", "--auth-url", TEAM, "--dry-run", "-o", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    (container,) = json.loads(result.output)[0]["spec"]["template"]["spec"]["containers"]
    assert {"name": "MODELYARD_SERVE_AUTH_URL", "value": TEAM} in container["env"]

    deploy_kubernetes("churn@2", "churn-api", namespace="ml", auth_url="", api=api,
                      timeout_s=30, workspace=ws)  # fmt: skip
    assert "MODELYARD_SERVE_AUTH_URL" not in live()[1]
