"""Apply / watch / rollback against FakeKubeApi, and the official client's wire format."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import urllib3

from modelyard.deploy.kubernetes import (
    FakeKubeApi,
    KubeSpec,
    OfficialKubeApi,
    deploy,
    render_manifests,
    rollback,
    rollout_status,
)
from modelyard.errors import ConfigError, DeployError, NotFound

OLD = "registry.local/churn@sha256:" + "1" * 64
NEW = "registry.local/churn@sha256:" + "2" * 64
KINDS = ["Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"]


class FakeClock:
    """Time that passes only when the code under test sleeps: no real waiting in tests."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def _manifests(image: str, version: str, **overrides: Any) -> list[dict[str, Any]]:
    spec = KubeSpec(
        name="churn-api", namespace="ml", image=image, model="churn", version=version, **overrides
    )
    return render_manifests(spec)


def _deploy(api: FakeKubeApi, image: str, version: str, **kwargs: Any) -> Any:
    clock = FakeClock()
    events: list[str] = []
    result = deploy(
        _manifests(image, version),
        namespace="ml",
        api=api,
        clock=clock,
        sleep=clock.sleep,
        on_event=events.append,
        **kwargs,
    )
    return result, events, clock


def _serving_image(api: FakeKubeApi) -> str | None:
    return api.image_of("Deployment", "churn-api", "ml")


def test_first_deploy_applies_everything_and_waits_until_ready() -> None:
    api = FakeKubeApi(steps_to_ready=3)
    result, events, clock = _deploy(api, OLD, "3")
    assert result.ok
    assert result.outcome == "ready"
    assert (result.image, result.revision) == (OLD, 1)
    assert (result.ready_replicas, result.desired_replicas) == (2, 2)
    assert [c[1] for c in api.calls if c[0] == "apply"] == KINDS
    assert clock.now == 4.0  # two polls of 2 s until the third read finds it ready
    assert "applied Deployment ml/churn-api" in events
    assert events[-1] == "Deployment ml/churn-api is ready"


def test_update_that_never_gets_ready_is_rolled_back_to_the_previous_spec() -> None:
    api = FakeKubeApi(behaviour={NEW: "hang"})
    _deploy(api, OLD, "3")
    result, events, clock = _deploy(api, NEW, "4", timeout_s=30)
    assert result.outcome == "rolled-back"
    assert not result.ok
    assert result.reasons[0].startswith("not ready after 30s")
    assert any("is running but not ready" in r for r in result.reasons)
    assert 30 <= clock.now < 40
    # The previous Deployment spec was applied again, and the old version serves.
    reapplied = [b for b in api.applied if b["kind"] == "Deployment"][-1]
    assert reapplied["spec"]["template"]["spec"]["containers"][0]["image"] == OLD
    assert reapplied["metadata"]["labels"]["io.modelyard/version"] == "3"
    assert "resourceVersion" not in reapplied["metadata"]
    assert "status" not in reapplied
    assert _serving_image(api) == OLD
    assert result.image == OLD
    assert result.ready_replicas == 2
    # Service, HPA and PDB were put back too (nothing was deleted: they existed before).
    restored = [c[1] for c in api.calls if c[0] == "apply"][-4:]
    assert restored == ["PodDisruptionBudget", "HorizontalPodAutoscaler", "Service", "Deployment"]
    assert not [c for c in api.calls if c[0] == "delete"]
    assert "rolled back ml/churn-api to the previous spec" in events


def test_crash_loop_fails_fast_with_its_reason_and_exit_code() -> None:
    api = FakeKubeApi(behaviour={NEW: "crashloop"})
    _deploy(api, OLD, "3")
    result, _, clock = _deploy(api, NEW, "4", timeout_s=300)
    assert result.outcome == "rolled-back"
    assert clock.now < 20  # did not sit out the 300 s timeout
    text = "\n".join(result.reasons)
    assert "CrashLoopBackOff (restarted 3 times)" in result.reasons[0]
    assert "exited with code 1 (Error): model file is corrupt" in text
    assert _serving_image(api) == OLD


def test_image_pull_failure_surfaces_the_pull_reason_and_event() -> None:
    api = FakeKubeApi(behaviour={NEW: "imagepull"})
    _deploy(api, OLD, "3")
    result, _, _ = _deploy(api, NEW, "4", timeout_s=10)
    text = "\n".join(result.reasons)
    assert "ImagePullBackOff (Back-off pulling image" in text
    assert f'Failed: Failed to pull image "{NEW}": not found' in text
    assert result.outcome == "rolled-back"


def test_progress_deadline_exceeded_is_reported_by_kubernetes_and_acted_on() -> None:
    api = FakeKubeApi(behaviour={NEW: "deadline"})
    _deploy(api, OLD, "3")
    result, _, clock = _deploy(api, NEW, "4", timeout_s=300)
    assert result.reasons[0].startswith("Deployment: ProgressDeadlineExceeded")
    assert clock.now < 20
    assert result.outcome == "rolled-back"


def test_failed_first_deploy_removes_what_it_created() -> None:
    # Decision: nothing to roll back to, so delete rather than leave a Deployment scaled to
    # zero that still looks deployed; the reasons are collected before the pods go.
    api = FakeKubeApi(behaviour={NEW: "crashloop"})
    result, events, _ = _deploy(api, NEW, "4")
    assert result.outcome == "removed"
    assert not result.ok
    assert any("CrashLoopBackOff" in r for r in result.reasons)
    assert sorted(c[1] for c in api.calls if c[0] == "delete") == sorted(KINDS)
    assert api.objects == {}
    assert api.replicasets == {}
    assert api.pods == {}
    assert result.image is None
    assert result.revision is None


def test_redeploying_the_same_spec_is_ready_at_once() -> None:
    api = FakeKubeApi()
    _deploy(api, OLD, "3")
    result, _, clock = _deploy(api, OLD, "3")
    assert result.ok
    assert result.revision == 1
    assert clock.now == 0.0


def test_live_autoscaled_replica_count_is_kept_on_redeploy() -> None:
    api = FakeKubeApi()
    _deploy(api, OLD, "3")
    api.objects[("Deployment", "ml", "churn-api")]["spec"]["replicas"] = 7  # the HPA scaled out
    clock = FakeClock()
    deploy(
        _manifests(NEW, "4", max_replicas=5),
        namespace="ml",
        api=api,
        clock=clock,
        sleep=clock.sleep,
    )
    applied = [b for b in api.applied if b["kind"] == "Deployment"][-1]
    assert applied["spec"]["replicas"] == 5  # kept, clamped to the new maximum


def test_a_refused_apply_restores_what_was_applied_and_raises() -> None:
    api = FakeKubeApi()
    _deploy(api, OLD, "3")
    api.fail_apply["HorizontalPodAutoscaler"] = "HTTP 422: spec.maxReplicas: Invalid value"
    with pytest.raises(DeployError, match="422"):
        _deploy(api, NEW, "4")
    api.fail_apply.clear()
    assert [c[1] for c in api.calls if c[0] == "apply"][-2:] == ["Service", "Deployment"]
    assert _serving_image(api) == OLD


def test_manifests_for_another_namespace_are_refused() -> None:
    with pytest.raises(Exception, match="is for namespace 'ml', not 'prod'"):
        deploy(_manifests(OLD, "3"), namespace="prod", api=FakeKubeApi())


def test_rollback_goes_back_one_revision_with_its_lineage() -> None:
    api = FakeKubeApi()
    _deploy(api, OLD, "3")
    _deploy(api, NEW, "4")
    clock = FakeClock()
    result = rollback("churn-api", namespace="ml", api=api, clock=clock, sleep=clock.sleep)
    assert result.ok
    assert result.image == OLD
    assert result.revision == 3
    live = api.objects[("Deployment", "ml", "churn-api")]
    assert live["metadata"]["labels"]["io.modelyard/version"] == "3"
    assert live["metadata"]["annotations"]["io.modelyard/image"] == OLD
    assert "pod-template-hash" not in live["spec"]["template"]["metadata"]["labels"]
    # And to an explicit revision: revision 2 is NEW.
    result = rollback(
        "churn-api", namespace="ml", api=api, to_revision=2, clock=clock, sleep=clock.sleep
    )
    assert result.image == NEW
    assert result.revision == 4


def test_rollback_without_history_or_deployment_is_not_found() -> None:
    api = FakeKubeApi()
    with pytest.raises(NotFound, match="no Deployment 'churn-api'"):
        rollback("churn-api", namespace="ml", api=api)
    _deploy(api, OLD, "3")
    with pytest.raises(NotFound, match="no earlier revision"):
        rollback("churn-api", namespace="ml", api=api)
    with pytest.raises(NotFound, match=r"no revision 9 \(known: 1\)"):
        rollback("churn-api", namespace="ml", api=api, to_revision=9)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ({"observedGeneration": 1}, "waiting"),
        ({"observedGeneration": 2, "updatedReplicas": 1, "replicas": 3}, "waiting"),
        ({"observedGeneration": 2, "updatedReplicas": 2, "replicas": 3}, "waiting"),
        (
            {"observedGeneration": 2, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 1},
            "waiting",
        ),
        (
            {"observedGeneration": 2, "updatedReplicas": 2, "replicas": 2, "availableReplicas": 2},
            "done",
        ),
    ],
)
def test_rollout_status_follows_kubectl(status: dict[str, Any], expected: str) -> None:
    dep = {"metadata": {"generation": 2}, "spec": {"replicas": 2}, "status": status}
    assert rollout_status(dep, 2)[0] == expected


# -- the real implementation, with the HTTP layer stubbed --------------------------------------


class RecordingPool:
    """Stands in for urllib3's PoolManager under the official client's REST layer: records
    what would go on the wire and answers with canned JSON."""

    def __init__(self, answers: dict[tuple[str, str], tuple[int, Any]]) -> None:
        self.answers = answers
        self.requests: list[dict[str, Any]] = []

    def request(self, method: str, url: str, **kwargs: Any) -> urllib3.HTTPResponse:
        parts = urlsplit(url)
        body = kwargs.get("body")
        query = parse_qs(parts.query)
        # Older clients pass a GET's query as urllib3 ``fields`` instead of in the URL.
        fields = kwargs.get("fields") or {}
        for key, value in fields.items() if isinstance(fields, dict) else fields:
            query.setdefault(key, []).append(str(value))
        self.requests.append(
            {
                "method": method,
                "path": parts.path,
                "query": query,
                "content_type": (kwargs.get("headers") or {}).get("Content-Type"),
                "body": json.loads(body) if body else None,
            }
        )
        status, payload = self.answers.get((method, parts.path), (404, _status(404, "not found")))
        return urllib3.HTTPResponse(
            body=json.dumps(payload).encode(),
            status=status,
            headers={"Content-Type": "application/json"},
            preload_content=False,
        )


def _status(code: int, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "code": code,
    }


@pytest.fixture
def official() -> tuple[OfficialKubeApi, RecordingPool]:
    from kubernetes import client

    configuration = client.Configuration()
    configuration.host = "https://cluster.example:6443"
    api_client = client.ApiClient(configuration)
    pool = RecordingPool({})
    api_client.rest_client.pool_manager = pool
    return OfficialKubeApi(api_client), pool


DEP_PATH = "/apis/apps/v1/namespaces/ml/deployments/churn-api"


def test_apply_is_a_server_side_apply_patch(
    official: tuple[OfficialKubeApi, RecordingPool],
) -> None:
    api, pool = official
    manifests = _manifests(NEW, "4")
    paths = {
        "Deployment": DEP_PATH,
        "Service": "/api/v1/namespaces/ml/services/churn-api",
        "HorizontalPodAutoscaler": (
            "/apis/autoscaling/v2/namespaces/ml/horizontalpodautoscalers/churn-api"
        ),
        "PodDisruptionBudget": "/apis/policy/v1/namespaces/ml/poddisruptionbudgets/churn-api",
    }
    for doc in manifests:
        pool.answers[("PATCH", paths[doc["kind"]])] = (
            200,
            {**doc, "metadata": {**doc["metadata"], "generation": 2}},
        )
    for doc in manifests:
        applied = api.apply(doc)
        assert applied["metadata"]["generation"] == 2
    assert [r["path"] for r in pool.requests] == [paths[d["kind"]] for d in manifests]
    for request, doc in zip(pool.requests, manifests, strict=True):
        assert request["method"] == "PATCH"
        assert request["content_type"] == "application/apply-patch+yaml"
        # The server's strconv.ParseBool takes "true" and "True" (client 36 sends the latter).
        assert {k: [v.lower() for v in vs] for k, vs in request["query"].items()} == {
            "fieldManager": ["modelyard"],
            "force": ["true"],
        }
        assert request["body"] == doc


def test_reads_lists_and_deletes(official: tuple[OfficialKubeApi, RecordingPool]) -> None:
    api, pool = official
    live = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": "churn-api",
            "generation": 3,
            "creationTimestamp": "2024-05-01T10:00:00Z",
        },
        "spec": {"replicas": 2},
    }
    pool.answers[("GET", DEP_PATH)] = (200, live)
    pool.answers[("GET", "/api/v1/namespaces/ml/events")] = (
        200,
        {"kind": "EventList", "items": [{"reason": "BackOff"}]},
    )
    pool.answers[("GET", "/api/v1/namespaces/ml/pods")] = (200, {"kind": "PodList", "items": []})
    pool.answers[("DELETE", DEP_PATH)] = (200, _status(200, "deleted"))
    assert api.get("Deployment", "churn-api", "ml") == live  # the server's JSON, untouched
    assert api.get("Service", "churn-api", "ml") is None  # 404 means absent
    assert api.list_events("ml", "churn-api-abc") == [{"reason": "BackOff"}]
    assert api.list_pods("ml", "app=x,pod-template-hash=abc") == []
    api.delete("Deployment", "churn-api", "ml")
    api.delete("Service", "churn-api", "ml")  # already gone: not an error
    queries = {(r["method"], r["path"]): r["query"] for r in pool.requests}
    assert queries[("GET", "/api/v1/namespaces/ml/events")]["fieldSelector"] == [
        "involvedObject.name=churn-api-abc"
    ]
    assert queries[("GET", "/api/v1/namespaces/ml/pods")]["labelSelector"] == [
        "app=x,pod-template-hash=abc"
    ]
    delete = next(r for r in pool.requests if r["method"] == "DELETE")
    assert delete["body"]["propagationPolicy"] == "Background"


def test_api_errors_become_deploy_errors_with_the_server_message(
    official: tuple[OfficialKubeApi, RecordingPool],
) -> None:
    api, pool = official
    pool.answers[("PATCH", DEP_PATH)] = (
        422,
        _status(422, 'Deployment.apps "churn-api" is invalid: spec.selector: field is immutable'),
    )
    with pytest.raises(
        DeployError, match=r"apply Deployment ml/churn-api: HTTP 422.*field is immutable"
    ):
        api.apply(_manifests(NEW, "4")[0])
    pool.answers[("GET", DEP_PATH)] = (403, _status(403, "forbidden: User cannot get deployments"))
    with pytest.raises(DeployError, match="HTTP 403.*forbidden"):
        api.get("Deployment", "churn-api", "ml")


def test_from_config_reads_the_given_kubeconfig(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "config"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "c", "cluster": {"server": "https://10.0.0.1:6443"}}],
                "users": [{"name": "u", "user": {"token": "t0ken"}}],
                "contexts": [{"name": "ctx", "context": {"cluster": "c", "user": "u"}}],
                "current-context": "ctx",
            }
        )
    )
    api = OfficialKubeApi.from_config(environ={"KUBECONFIG": str(kubeconfig)})
    assert api.api_client.configuration.host == "https://10.0.0.1:6443"
    with pytest.raises(ConfigError, match="Kubernetes configuration"):
        OfficialKubeApi.from_config(kubeconfig=str(tmp_path / "missing"))


def test_an_unreachable_cluster_is_a_deploy_error(
    official: tuple[OfficialKubeApi, RecordingPool],
) -> None:
    api, pool = official

    def refuse(method: str, url: str, **kwargs: Any) -> urllib3.HTTPResponse:
        raise urllib3.exceptions.MaxRetryError(None, url, "connection refused")  # type: ignore[arg-type]

    pool.request = refuse  # type: ignore[method-assign]
    with pytest.raises(
        DeployError, match="cannot reach the Kubernetes API at https://cluster.example:6443"
    ):
        api.get("Deployment", "churn-api", "ml")
