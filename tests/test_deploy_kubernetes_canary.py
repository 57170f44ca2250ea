"""A canary on Kubernetes by replica ratio: the candidate's manifests validate strictly, its
pods join the deployment's Service only while it takes traffic, and the rollout controller
drives it through the target protocol (against the fake cluster, with the analysis reading a
prediction log written here)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import kubernetes_validate
import pytest

from modelyard.deploy import deploy_kubernetes
from modelyard.deploy.kubernetes import KubeSpec
from modelyard.deploy.kubernetes import manifests as m
from modelyard.deploy.kubernetes.target import KubernetesOptions
from modelyard.deploy.spec import DeploySpec
from modelyard.errors import InvalidName, RolloutAborted, RolloutFailed
from modelyard.monitor import progressive as pg
from modelyard.monitor.analysis import Thresholds
from modelyard.serving.predlog import PREDICTIONS, SegmentLog
from modelyard.testing import FakeKubeApi
from modelyard.workspace import Workspace

PINNED_K8S, NEWEST_K8S = "1.30.0", "1.37.0"
SPEC = KubeSpec(name="churn-api", namespace="ml", image="registry.local:5000/churn:2",
                model="churn", version="2", replicas=2)  # fmt: skip


@pytest.mark.parametrize("version", [PINNED_K8S, NEWEST_K8S])
@pytest.mark.parametrize("serving", [False, True])
def test_candidate_manifests_validate_strictly(version: str, serving: bool) -> None:
    deployment, service = m.render_candidate(SPEC)
    for doc in (m.candidate_serving(deployment, 3, serving), service):
        kubernetes_validate.validate(doc, version, strict=True)


def test_candidate_pods_join_the_service_only_while_serving() -> None:
    deployment, service = m.render_candidate(SPEC)
    primary_service = m.render_service(SPEC)["spec"]["selector"]
    assert deployment["metadata"]["name"] == service["metadata"]["name"] == "churn-api-candidate"
    for serving in (False, True):
        body = m.candidate_serving(deployment, 1, serving)
        labels = body["spec"]["template"]["metadata"]["labels"]
        selector = body["spec"]["selector"]["matchLabels"]
        assert selector.items() <= labels.items()  # the Deployment still selects its pods
        assert (primary_service.items() <= labels.items()) is serving
        assert service["spec"]["selector"].items() <= labels.items()
    env = deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    assert {"name": "MODELYARD_SERVE_VARIANT", "value": "canary"} in env
    # the primary Deployment's own selector never matches a candidate that is not serving
    primary = m.render_deployment(SPEC)["spec"]["selector"]["matchLabels"]
    idle = m.candidate_serving(deployment, 1, False)["spec"]["template"]["metadata"]["labels"]
    assert not primary.items() <= idle.items()


@pytest.mark.parametrize(
    ("percent", "primary", "expected"), [(5, 2, 1), (25, 6, 2), (50, 2, 2), (75, 2, 6), (100, 3, 3)]
)
def test_replica_ratio(percent: float, primary: int, expected: int) -> None:
    assert m.canary_replicas(percent, primary) == expected


def test_long_names_are_refused() -> None:
    with pytest.raises(InvalidName, match="at most 63 characters"):
        m.candidate_name("a" * 60)


def _pushed(ws: Workspace) -> list[str]:
    from _deploy_helpers import register_churn

    pytest.importorskip("sklearn")
    refs = register_churn(ws, 2)
    for ref in refs:
        number = int(ref.split("@")[1])
        digest = "sha256:" + str(number) * 64
        ws.store.models.set_image(
            "churn", number, image_id="sha256:" + str(number + 4) * 64, image_digest=digest,
            image_size=1, image_ref=f"registry.example/ml/churn@{digest}",
        )  # fmt: skip
    return refs


def _writer(log_dir: Path, stop: threading.Event, candidate_latency_s: float) -> None:
    """Answers of both variants, as the pods would log them, until stopped."""
    log = SegmentLog(log_dir, PREDICTIONS, segment_bytes=1 << 20, segment_seconds=60)
    log.start()
    i = 0
    while not stop.wait(0.02):
        now = time.time_ns()
        log.put_many(
            [
                (f"p{i}", now, "churn", "1", "v2", [[0.1]], [1], 0.002, 1, "primary"),
                (f"c{i}", now, "churn", "2", "v2", [[0.1]], [1], candidate_latency_s, 1, "canary"),
            ]
        )
        i += 1
    log.close()


@pytest.mark.parametrize("latency_s", [0.002, 0.2], ids=["healthy", "slow"])
def test_the_controller_drives_a_kubernetes_canary(
    sqlite_workspace: Workspace, tmp_path: Path, latency_s: float
) -> None:
    ws = sqlite_workspace
    v1, v2 = _pushed(ws)
    api = FakeKubeApi(steps_to_ready=1)
    deploy_kubernetes(v1, "churn-api", namespace="ml", replicas=2, api=api, timeout_s=30,
                      workspace=ws)  # fmt: skip
    # A cluster's pods log to their volumes; here the analysis reads a folder written above.
    ws.store.deployments.update("churn-api", config={"log_dir": str(tmp_path)})
    spec = DeploySpec(v2, "churn-api", target="kubernetes", replicas=2, timeout_s=30,
                      strategy="canary", options=KubernetesOptions("ml", api=api))  # fmt: skip
    plan = pg.RolloutPlan(pg.canary_steps([25, 100], 1.5), Thresholds(min_requests=5),
                          poll_s=0.2)  # fmt: skip
    stop = threading.Event()
    writer = threading.Thread(target=_writer, args=(tmp_path, stop, latency_s))
    writer.start()
    try:
        if latency_s > 0.1:
            with pytest.raises(RolloutAborted, match="p99 latency"):
                pg.rollout(spec, plan, workspace=ws)
        else:
            result = pg.rollout(spec, plan, workspace=ws)
            assert result.status == pg.PROMOTED
    finally:
        stop.set()
        writer.join()
    name = "churn-api-candidate"
    candidates = [b for b in api.applied
                  if b["kind"] == "Deployment" and b["metadata"]["name"] == name]  # fmt: skip
    instance = "app.kubernetes.io/instance"
    scale = [(b["spec"]["replicas"], b["spec"]["template"]["metadata"]["labels"].get(instance)
              == "churn-api") for b in candidates]  # fmt: skip
    expected = [(1, False), (1, True)] + ([(2, True)] if latency_s < 0.1 else [])
    assert scale == expected  # idle, then 25 % (1 of 3 pods), then 100 % (2 beside 2)
    assert api.get("Deployment", "churn-api-candidate", "ml") is None  # stopped either way
    live = api.get("Deployment", "churn-api", "ml")
    assert live is not None
    image = live["spec"]["template"]["spec"]["containers"][0]["image"]
    assert image.endswith(("2" if latency_s < 0.1 else "1") * 64)


def test_a_candidate_that_never_starts_leaves_the_primary_alone(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    v1, v2 = _pushed(ws)
    crashing = ws.store.models.get_version("churn", 2).image_ref
    api = FakeKubeApi(steps_to_ready=1, behaviour={str(crashing): "crashloop"})
    deploy_kubernetes(v1, "churn-api", namespace="ml", replicas=2, api=api, timeout_s=30,
                      workspace=ws)  # fmt: skip
    ws.store.deployments.update("churn-api", config={"log_dir": "/nonexistent"})
    spec = DeploySpec(v2, "churn-api", target="kubernetes", replicas=2, timeout_s=30,
                      strategy="canary", options=KubernetesOptions("ml", api=api))  # fmt: skip
    with pytest.raises(RolloutFailed, match="candidate"):
        pg.rollout(spec, pg.RolloutPlan(pg.canary_steps([50], 1)), workspace=ws)
    assert api.get("Deployment", "churn-api-candidate", "ml") is None
    dep = ws.store.deployments.get("churn-api")
    assert dep.current is not None
    assert dep.current.model_ref == v1
