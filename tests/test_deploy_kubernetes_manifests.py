"""Kubernetes manifests: schema-valid for a pinned Kubernetes version, locked down, labelled."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest
import yaml

import modelyard.deploy.kubernetes as kube
from modelyard.deploy.kubernetes import KubeSpec, label_value, render_manifests, to_yaml
from modelyard.deploy.kubernetes import manifests as m
from modelyard.errors import InvalidName, InvalidParameter

# The oldest Kubernetes release we promise (PDB unhealthyPodEvictionPolicy is beta there) and
# the newest schema kubernetes-validate ships, so a removed field shows up too.
PINNED_K8S = "1.30.0"
NEWEST_K8S = "1.37.0"
DIGEST = "sha256:" + "a" * 64
RUN = "r-" + "7" * 32


def _spec(**overrides: Any) -> KubeSpec:
    fields: dict[str, Any] = {
        "name": "churn-api",
        "namespace": "ml",
        "image": f"registry.local:5000/models/churn@{DIGEST}",
        "model": "churn",
        "version": "4",
        "labels": {
            "io.modelyard.run": RUN,
            "io.modelyard/datasets": "customers@sha256:" + "b" * 64 + ",tickets@3",
            "team": "risk",
        },
        "env": {"MODELYARD_SERVE_WORKERS": "2"},
        "image_pull_secret": "regcred",
    }
    fields.update(overrides)
    return KubeSpec(**fields)


def _by_kind(manifests: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {doc["kind"]: doc for doc in manifests}


@pytest.mark.parametrize("version", [PINNED_K8S, NEWEST_K8S])
@pytest.mark.parametrize(
    "spec",
    [_spec(), _spec(replicas=1, image_pull_secret=None, labels={}, env={}), _spec(max_replicas=10)],
    ids=["full", "minimal", "autoscaled"],
)
def test_every_manifest_validates_strictly(spec: KubeSpec, version: str) -> None:
    manifests = render_manifests(spec)
    assert [doc["kind"] for doc in manifests] == list(kube.KINDS)
    for doc in manifests:
        kubernetes_validate.validate(doc, version, strict=True)


def test_strict_validation_catches_a_misspelt_field() -> None:
    # The negative control: without it a validator that accepted everything would pass above.
    deployment = copy.deepcopy(render_manifests(_spec())[0])
    deployment["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, PINNED_K8S, strict=True)


def test_pod_is_locked_down() -> None:
    deployment = _by_kind(render_manifests(_spec()))["Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 10001
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    sec = container["securityContext"]
    assert sec["readOnlyRootFilesystem"] is True
    assert sec["allowPrivilegeEscalation"] is False
    assert sec["runAsNonRoot"] is True
    assert sec["runAsUser"] == 10001
    assert sec["capabilities"] == {"drop": ["ALL"]}
    assert sec["seccompProfile"] == {"type": "RuntimeDefault"}
    # Writable places exist only as emptyDirs, and the server is told to log predictions there.
    mounts = {v["mountPath"]: v["name"] for v in container["volumeMounts"]}
    assert mounts == {"/tmp": "tmp", m.PREDICTION_LOG_DIR: "predictions"}
    assert {v["name"] for v in pod["volumes"] if "emptyDir" in v} == {"tmp", "predictions"}
    env = {e["name"]: e["value"] for e in container["env"]}
    assert env == {"MODELYARD_SERVE_LOG_DIR": m.PREDICTION_LOG_DIR, "MODELYARD_SERVE_WORKERS": "2"}
    assert container["resources"] == {
        "requests": {"cpu": "250m", "memory": "256Mi"},
        "limits": {"cpu": "1", "memory": "1Gi"},
    }
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]


def test_probes_rolling_update_and_drain() -> None:
    spec = _spec(drain_s=7)
    deployment = _by_kind(render_manifests(spec))["Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "http"}
    assert container["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["ports"] == [{"name": "http", "containerPort": 8080, "protocol": "TCP"}]
    assert deployment["spec"]["strategy"] == {
        "type": "RollingUpdate",
        "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
    }
    # preStop runs the image's own Python (no shell in the image is assumed) ...
    command = container["lifecycle"]["preStop"]["exec"]["command"]
    assert command == [m.IMAGE_PYTHON, "-c", "import time; time.sleep(7)"]
    # ... and the grace period covers the drain plus the server's own graceful shutdown.
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > 7 + m.SERVER_GRACE_S


def test_service_hpa_and_pdb() -> None:
    docs = _by_kind(render_manifests(_spec(replicas=3, min_replicas=2, max_replicas=10)))
    selector = docs["Deployment"]["spec"]["selector"]["matchLabels"]
    assert selector == {
        "app.kubernetes.io/instance": "churn-api",
        "app.kubernetes.io/managed-by": "modelyard",
    }
    assert docs["Service"]["spec"]["selector"] == selector
    assert docs["Service"]["spec"]["ports"][0]["targetPort"] == "http"
    hpa = docs["HorizontalPodAutoscaler"]["spec"]
    assert hpa["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "churn-api",
    }
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 10)
    assert hpa["metrics"][0]["resource"]["target"] == {
        "type": "Utilization",
        "averageUtilization": 70,
    }
    assert docs["Deployment"]["spec"]["replicas"] == 3
    pdb = docs["PodDisruptionBudget"]["spec"]
    assert pdb["maxUnavailable"] == 1
    assert pdb["selector"]["matchLabels"] == selector


def test_replica_defaults() -> None:
    hpa = _by_kind(render_manifests(_spec(replicas=2)))["HorizontalPodAutoscaler"]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 2)
    hpa = _by_kind(render_manifests(_spec(replicas=2, max_replicas=6)))["HorizontalPodAutoscaler"]
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)


def test_lineage_labels_are_sanitised_and_kept_whole_in_annotations() -> None:
    datasets = "customers@sha256:" + "b" * 64 + ",tickets@3"
    for doc in render_manifests(_spec()):
        labels, annotations = doc["metadata"]["labels"], doc["metadata"]["annotations"]
        assert labels["io.modelyard/model"] == "churn"
        assert labels["io.modelyard/version"] == "4"
        assert labels["io.modelyard/run"] == RUN  # image-label style key translated
        assert labels["team"] == "risk"
        assert labels["app.kubernetes.io/name"] == "churn"
        assert labels["app.kubernetes.io/version"] == "4"
        cut = labels["io.modelyard/datasets"]
        assert len(cut) <= 63
        assert cut.startswith("customers-sha256-bbbb")
        assert annotations["io.modelyard/datasets"] == datasets
        assert annotations["io.modelyard/image"] == f"registry.local:5000/models/churn@{DIGEST}"
    pod_labels = render_manifests(_spec())[0]["spec"]["template"]["metadata"]["labels"]
    assert pod_labels["io.modelyard/version"] == "4"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("churn", "churn"),
        ("4", "4"),
        ("sha256:abc", "sha256-abc"),
        ("-weird name!-", "weird-name"),
        ("", ""),
    ],
)
def test_label_value(value: str, expected: str) -> None:
    assert label_value(value) == expected


def test_long_label_values_stay_distinct() -> None:
    a, b = label_value("x" * 80 + "a"), label_value("x" * 80 + "b")
    assert a != b
    assert len(a) <= 63
    assert len(b) <= 63


@pytest.mark.parametrize(
    ("overrides", "error", "fragment"),
    [
        ({"name": "Churn"}, InvalidName, "not a valid Kubernetes name"),
        ({"name": "churn_api"}, InvalidName, "not a valid Kubernetes name"),
        ({"name": "4churn"}, InvalidName, "starting with a letter"),
        ({"name": "a" * 64}, InvalidName, "at most 63"),
        ({"name": ""}, InvalidName, "must not be empty"),
        ({"namespace": "ML"}, InvalidName, "namespace"),
        ({"namespace": "../etc"}, InvalidName, "namespace"),
        ({"image_pull_secret": "Reg Cred"}, InvalidName, "image pull secret"),
        ({"image": "bad image\nFROM x"}, InvalidParameter, "not an image reference"),
        ({"replicas": 0}, InvalidParameter, "replicas must be at least 1"),
        ({"min_replicas": 0}, InvalidParameter, "min_replicas must be at least 1"),
        ({"min_replicas": 5, "max_replicas": 3}, InvalidParameter, "larger than max_replicas"),
        ({"replicas": 2, "min_replicas": 3, "max_replicas": 5}, InvalidParameter, "must lie"),
        ({"cpu_target": 0}, InvalidParameter, "cpu_target"),
        ({"port": 70000}, InvalidParameter, "not a port number"),
        ({"cpu_request": "lots"}, InvalidParameter, "not a Kubernetes quantity"),
        ({"memory_request": "2Gi", "memory_limit": "1Gi"}, InvalidParameter, "above its limit"),
        ({"env": {"BAD-NAME": "x"}}, InvalidParameter, "environment variable"),
        ({"labels": {"bad key!": "x"}}, InvalidParameter, "not a valid Kubernetes label key"),
        ({"labels": {"app.kubernetes.io/name": "x"}}, InvalidParameter, "set by modelyard"),
    ],
)
def test_invalid_specs_are_refused_clearly(
    overrides: dict[str, Any], error: type[Exception], fragment: str
) -> None:
    with pytest.raises(error, match=fragment):
        _spec(**overrides)


def test_to_yaml_is_multi_document_and_round_trips() -> None:
    manifests = render_manifests(_spec())
    text = to_yaml(manifests)
    assert text.count("\n---\n") == 3
    assert text.startswith("apiVersion: apps/v1\nkind: Deployment\n")
    assert list(yaml.safe_load_all(text)) == manifests


def test_image_layout_constants_match_the_image_builder() -> None:
    from modelyard.images.context import USER_UID, VENV

    assert f"{VENV}/bin/python" == m.IMAGE_PYTHON
    assert m.IMAGE_UID == USER_UID


def test_public_api_is_exported() -> None:
    for name in kube.__all__:
        assert getattr(kube, name) is not None, name
    public = {n for n in dir(kube) if not n.startswith("_")} - {"annotations"}
    modules = {"apply", "client", "fake", "manifests", "target"}
    assert public - modules == set(kube.__all__)
