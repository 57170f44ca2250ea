"""Kubernetes manifests for one model server: Deployment, Service, HPA and PodDisruptionBudget.

Plain dictionaries in the shape the API server takes, so they print as YAML for a team's own
GitOps (``to_yaml``) and apply unchanged with server-side apply. Everything a user typed is
checked here, before any request leaves the machine: a bad name fails as
:class:`~modelyard.errors.InvalidName`, anything else as
:class:`~modelyard.errors.InvalidParameter`, instead of as a 422 from a cluster half-way through
a rollout.

The pod is locked down the way the ``restricted`` Pod Security Standard asks (non-root, no
privilege escalation, all capabilities dropped, RuntimeDefault seccomp, read-only root
filesystem, no service-account token): a model server needs none of those privileges, and a
model file is code-adjacent input we would rather not run with them.
"""

from __future__ import annotations

import copy
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from modelyard import image_contract as contract
from modelyard.errors import InvalidName, InvalidParameter

# The image contract (modelyard.image_contract), under the names this module always exported.
IMAGE_PYTHON = contract.PYTHON
IMAGE_UID = contract.UID
PREDICTION_LOG_DIR = contract.PREDICTION_LOG_DIR
LOG_DIR_ENV = contract.LOG_DIR_ENV
READY_PATH = contract.READY_PATH
LIVE_PATH = contract.LIVE_PATH
SERVER_GRACE_S = contract.GRACE_S

CONTAINER_NAME = "model"

LINEAGE_PREFIX = "io.modelyard/"
MANAGED_BY = "modelyard"
_STD = "app.kubernetes.io/"

_DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?\Z")
_DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?\Z")
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?\Z")
_LABEL_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*\Z")
# Image references: registry/path[:tag][@sha256:digest] without whitespace or control bytes.
_IMAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/@+-]*\Z")
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?\Z")
_FACTORS = {
    "m": 1e-3,
    "": 1.0,
    "k": 1e3,
    "M": 1e6,
    "G": 1e9,
    "T": 1e12,
    "P": 1e15,
    "E": 1e18,
    "Ki": 2.0**10,
    "Mi": 2.0**20,
    "Gi": 2.0**30,
    "Ti": 2.0**40,
    "Pi": 2.0**50,
    "Ei": 2.0**60,
}


@dataclass(frozen=True)
class KubeSpec:
    """What to run: one model image as ``name`` in ``namespace``.

    ``replicas`` is the starting scale; the HorizontalPodAutoscaler keeps the Deployment between
    ``min_replicas`` (default: ``replicas``) and ``max_replicas`` (default: the larger of the
    two, i.e. a fixed scale until a maximum is given). ``port`` must be the port the image's
    server listens on (modelyard images: 8080). ``labels`` carries the lineage
    (``io.modelyard/run``, ``io.modelyard/datasets``, …; ``io.modelyard.run`` image-label style
    keys are accepted too); values are made to fit Kubernetes' label grammar and the full
    values are kept as annotations. ``drain_s`` is how long a terminating pod keeps serving
    while Services and load balancers stop sending it traffic.
    """

    name: str
    namespace: str
    image: str
    model: str
    version: str
    replicas: int = 2
    min_replicas: int | None = None
    max_replicas: int | None = None
    cpu_target: int = 70
    port: int = contract.PORT
    cpu_request: str = "250m"
    cpu_limit: str = "1"
    memory_request: str = "256Mi"
    memory_limit: str = "1Gi"
    labels: Mapping[str, str] = field(default_factory=dict)
    env: Mapping[str, str] = field(default_factory=dict)
    image_pull_secret: str | None = None
    drain_s: int = 5

    def __post_init__(self) -> None:
        check_name(self.name, "deployment name")
        check_namespace(self.namespace)
        if not isinstance(self.image, str) or not _IMAGE.match(self.image):
            raise InvalidParameter(f"image {self.image!r} is not an image reference")
        if not self.model:
            raise InvalidParameter("model name must not be empty")
        if not str(self.version):
            raise InvalidParameter("model version must not be empty")
        for what, value in (("replicas", self.replicas), ("min_replicas", self.min_replicas)):
            if value is not None and (not _is_int(value) or value < 1):
                raise InvalidParameter(f"{what} must be at least 1 (got {value!r})")
        if self.max_replicas is not None and (
            not _is_int(self.max_replicas) or self.max_replicas < 1
        ):
            raise InvalidParameter(f"max_replicas must be at least 1 (got {self.max_replicas!r})")
        low, high = self.min_replicas_effective, self.max_replicas_effective
        if low > high:
            raise InvalidParameter(f"min_replicas {low} is larger than max_replicas {high}")
        if not low <= self.replicas <= high:
            raise InvalidParameter(
                f"replicas {self.replicas} must lie between min_replicas {low} and "
                f"max_replicas {high}"
            )
        if not _is_int(self.cpu_target) or not 1 <= self.cpu_target <= 1000:
            raise InvalidParameter(
                f"cpu_target is a utilisation percentage from 1 to 1000 (got {self.cpu_target!r})"
            )
        if not _is_int(self.port) or not 1 <= self.port <= 65535:
            raise InvalidParameter(f"port {self.port!r} is not a port number")
        if not _is_int(self.drain_s) or not 0 <= self.drain_s <= 300:
            raise InvalidParameter(f"drain_s must be 0 to 300 seconds (got {self.drain_s!r})")
        _check_pair("cpu", self.cpu_request, self.cpu_limit)
        _check_pair("memory", self.memory_request, self.memory_limit)
        for key in self.env:
            if not _ENV_NAME.match(key):
                raise InvalidParameter(f"environment variable name {key!r} is not valid")
        if self.image_pull_secret is not None:
            check_name(self.image_pull_secret, "image pull secret", subdomain=True)
        lineage_labels(self)  # raises on a bad label key

    @property
    def min_replicas_effective(self) -> int:
        return self.min_replicas if self.min_replicas is not None else self.replicas

    @property
    def max_replicas_effective(self) -> int:
        if self.max_replicas is not None:
            return self.max_replicas
        return max(self.replicas, self.min_replicas_effective)


def check_name(name: str, kind: str = "name", *, subdomain: bool = False) -> str:
    """A Kubernetes object name. Deployments and their Service share it, and Service names are
    DNS-1035 labels (lowercase, starts with a letter, at most 63 characters)."""
    pattern, limit, grammar = (
        (_DNS1123_SUBDOMAIN, 253, "lowercase letters, digits, '-' and '.'")
        if subdomain
        else (_DNS1035, 63, "lowercase letters, digits and '-', starting with a letter")
    )
    if not isinstance(name, str) or not name:
        raise InvalidName(f"{kind} must not be empty")
    if len(name) > limit or not pattern.match(name):
        raise InvalidName(
            f"{kind} {name!r} is not a valid Kubernetes name: use {grammar}, end with a letter "
            f"or digit, at most {limit} characters"
        )
    return name


def check_namespace(namespace: str) -> str:
    if not isinstance(namespace, str) or not namespace:
        raise InvalidName("namespace must not be empty")
    if len(namespace) > 63 or not _DNS1123_LABEL.match(namespace):
        raise InvalidName(
            f"namespace {namespace!r} is not a valid Kubernetes namespace: lowercase letters, "
            "digits and '-', at most 63 characters"
        )
    return namespace


def label_value(value: str) -> str:
    """``value`` made into a valid label value (``[A-Za-z0-9._-]``, alphanumeric at both ends,
    at most 63 characters). A value that has to be cut keeps a hash of the whole, so two long
    values stay distinguishable; the exact value lives on in an annotation."""
    cleaned = _LABEL_UNSAFE.sub("-", str(value)).strip("-._")
    if len(cleaned) > 63:
        digest = hashlib.sha256(str(value).encode()).hexdigest()[:10]
        cleaned = cleaned[:52].rstrip("-._") + "-" + digest
    return cleaned


def _label_key(key: str) -> str:
    if key.startswith("io.modelyard.") and "/" not in key:
        key = LINEAGE_PREFIX + key[len("io.modelyard.") :]
    prefix, slash, name = key.rpartition("/")
    valid = bool(_LABEL_NAME.match(name)) and len(name) <= 63
    if slash:
        valid = valid and len(prefix) <= 253 and bool(_DNS1123_SUBDOMAIN.match(prefix))
    if not valid:
        raise InvalidParameter(
            f"label key {key!r} is not a valid Kubernetes label key ([prefix/]name, name up to "
            "63 characters of letters, digits, '-', '_' and '.')"
        )
    if key.startswith(_STD):
        raise InvalidParameter(f"label {key!r} is set by modelyard and cannot be given")
    return key


def lineage_labels(spec: KubeSpec) -> dict[str, str]:
    """The lineage as exact values, keyed the way labels and annotations are keyed."""
    lineage = {LINEAGE_PREFIX + "model": spec.model, LINEAGE_PREFIX + "version": str(spec.version)}
    for key, value in spec.labels.items():
        lineage[_label_key(key)] = str(value)
    return lineage


def selector_labels(spec: KubeSpec) -> dict[str, str]:
    """Labels the Deployment selects its pods by. They never change between versions (a
    Deployment's selector is immutable), so only the instance and the manager are in it."""
    return {_STD + "instance": spec.name, _STD + "managed-by": MANAGED_BY}


def common_labels(spec: KubeSpec) -> dict[str, str]:
    labels = {
        _STD + "name": label_value(spec.model),
        _STD + "version": label_value(str(spec.version)),
        _STD + "component": "model-server",
        _STD + "part-of": "modelyard",
        **selector_labels(spec),
    }
    labels.update({key: label_value(value) for key, value in lineage_labels(spec).items()})
    return labels


def common_annotations(spec: KubeSpec) -> dict[str, str]:
    return {**lineage_labels(spec), LINEAGE_PREFIX + "image": spec.image}


def render_manifests(spec: KubeSpec) -> list[dict[str, Any]]:
    """Deployment, Service, HorizontalPodAutoscaler and PodDisruptionBudget, in apply order."""
    return [
        render_deployment(spec),
        render_service(spec),
        render_hpa(spec),
        render_pdb(spec),
    ]


def _metadata(spec: KubeSpec) -> dict[str, Any]:
    return {
        "name": spec.name,
        "namespace": spec.namespace,
        "labels": common_labels(spec),
        "annotations": common_annotations(spec),
    }


def container_security_context() -> dict[str, Any]:
    """What the ``restricted`` Pod Security Standard asks of a container, and a read-only root."""
    return {
        "runAsNonRoot": True,
        "runAsUser": IMAGE_UID,
        "runAsGroup": contract.GID,
        "allowPrivilegeEscalation": False,
        "readOnlyRootFilesystem": True,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": IMAGE_UID,
        "runAsGroup": contract.GID,
        "fsGroup": contract.GID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def render_deployment(spec: KubeSpec) -> dict[str, Any]:
    labels = common_labels(spec)
    env = {LOG_DIR_ENV: PREDICTION_LOG_DIR, **spec.env}
    http_probe = {"httpGet": {"path": READY_PATH, "port": "http"}, "timeoutSeconds": 2}
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": spec.image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "env": [{"name": key, "value": str(value)} for key, value in env.items()],
        "resources": {
            "requests": {"cpu": spec.cpu_request, "memory": spec.memory_request},
            "limits": {"cpu": spec.cpu_limit, "memory": spec.memory_limit},
        },
        # The model loads before the server answers: give it up to two minutes before the
        # liveness probe may restart it, then check readiness often so rollouts move quickly.
        "startupProbe": {
            "httpGet": {"path": LIVE_PATH, "port": "http"},
            "periodSeconds": 2,
            "failureThreshold": 60,
            "timeoutSeconds": 2,
        },
        "readinessProbe": {**http_probe, "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {
            "httpGet": {"path": LIVE_PATH, "port": "http"},
            "periodSeconds": 10,
            "failureThreshold": 3,
            "timeoutSeconds": 2,
        },
        # Endpoints are removed asynchronously after a pod starts terminating; keep serving
        # for drain_s so no request is routed to a closed socket. Exec with the image's Python:
        # a model image guarantees Python, not a shell or a sleep binary.
        "lifecycle": {
            "preStop": {
                "exec": {
                    "command": [IMAGE_PYTHON, "-c", f"import time; time.sleep({spec.drain_s})"]
                }
            }
        },
        "securityContext": container_security_context(),
        "volumeMounts": [
            {"name": "tmp", "mountPath": contract.SCRATCH_DIRS[0]},
            {"name": "predictions", "mountPath": PREDICTION_LOG_DIR},
        ],
    }
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": spec.drain_s + SERVER_GRACE_S + 5,
        "securityContext": pod_security_context(),
        "containers": [container],
        "volumes": [
            {"name": "tmp", "emptyDir": {"sizeLimit": "256Mi"}},
            {"name": "predictions", "emptyDir": {"sizeLimit": "1Gi"}},
        ],
        # Spread replicas over nodes when the cluster can, so one node going away does not
        # take every replica with it (the PodDisruptionBudget covers planned drains).
        "topologySpreadConstraints": [
            {
                "maxSkew": 1,
                "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": selector_labels(spec)},
            }
        ],
    }
    if spec.image_pull_secret is not None:
        pod_spec["imagePullSecrets"] = [{"name": spec.image_pull_secret}]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(spec),
        "spec": {
            "replicas": spec.replicas,
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
            "selector": {"matchLabels": selector_labels(spec)},
            # Never fewer ready pods than asked for during a rollout: one extra pod at a time.
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1},
            },
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        **common_annotations(spec),
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(spec.port),
                        "prometheus.io/path": contract.METRICS_PATH,
                    },
                },
                "spec": pod_spec,
            },
        },
    }


def render_service(spec: KubeSpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": _metadata(spec),
        "spec": {
            "type": "ClusterIP",
            "selector": selector_labels(spec),
            "ports": [{"name": "http", "port": spec.port, "targetPort": "http", "protocol": "TCP"}],
        },
    }


def render_hpa(spec: KubeSpec) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": _metadata(spec),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
            "minReplicas": spec.min_replicas_effective,
            "maxReplicas": spec.max_replicas_effective,
            "metrics": [
                {
                    "type": "Resource",
                    "resource": {
                        "name": "cpu",
                        "target": {"type": "Utilization", "averageUtilization": spec.cpu_target},
                    },
                }
            ],
        },
    }


def render_pdb(spec: KubeSpec) -> dict[str, Any]:
    # maxUnavailable 1 rather than minAvailable: a one-replica deployment must not block node
    # drains forever; and a crash-looping pod must not either (AlwaysAllow).
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": _metadata(spec),
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": selector_labels(spec)},
            "unhealthyPodEvictionPolicy": "AlwaysAllow",
        },
    }


def to_yaml(manifests: Iterable[Mapping[str, Any]]) -> str:
    """Multi-document YAML, one ``---`` separated document per object, keys in render order."""
    import yaml

    return yaml.safe_dump_all(
        [_plain(m) for m in manifests], sort_keys=False, default_flow_style=False
    )


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def parse_quantity(text: str, what: str = "quantity") -> float:
    """A Kubernetes resource quantity (``250m``, ``1``, ``512Mi``) as a number."""
    match = _QUANTITY.match(str(text))
    if not match:
        raise InvalidParameter(
            f"{what} {text!r} is not a Kubernetes quantity (e.g. 250m, 1, 512Mi, 2Gi)"
        )
    return float(match.group(1)) * _FACTORS[match.group(2) or ""]


def _check_pair(resource: str, request: str, limit: str) -> None:
    low = parse_quantity(request, f"{resource} request")
    high = parse_quantity(limit, f"{resource} limit")
    if low <= 0:
        raise InvalidParameter(f"{resource} request {request!r} must be more than zero")
    if low > high:
        raise InvalidParameter(f"{resource} request {request!r} is above its limit {limit!r}")


# ---- a canary candidate (progressive rollouts) ----------------------------------------------
#: The label tying a candidate's pods to the deployment they are a candidate of.
CANDIDATE_OF = LINEAGE_PREFIX + "candidate-of"
CANDIDATE_SUFFIX = "-candidate"


def candidate_name(name: str) -> str:
    """The candidate's Deployment and Service: ``<name>-candidate`` (a valid name itself)."""
    return check_name(name + CANDIDATE_SUFFIX, "candidate name (the deployment name + -candidate)")


def render_candidate(spec: KubeSpec) -> list[dict[str, Any]]:
    """The candidate of deployment ``spec.name`` running ``spec``'s image: a Deployment
    ``<name>-candidate`` (selected by :data:`CANDIDATE_OF`; no HPA or PDB: its scale is the
    canary's share) and a Service of its own. Its pods start out of the deployment's Service;
    :func:`candidate_serving` puts them in (a canary by replica ratio)."""
    name = candidate_name(spec.name)
    deployment = render_deployment(spec)
    own = {CANDIDATE_OF: spec.name}
    template = deployment["spec"]["template"]
    labels = {k: v for k, v in template["metadata"]["labels"].items()
              if k not in selector_labels(spec)}  # fmt: skip
    template["metadata"]["labels"] = {**labels, **own}
    container = template["spec"]["containers"][0]
    container["env"].append({"name": "MODELYARD_SERVE_VARIANT", "value": "canary"})
    template["spec"]["topologySpreadConstraints"][0]["labelSelector"] = {"matchLabels": own}
    deployment["metadata"]["name"] = name
    deployment["spec"]["selector"] = {"matchLabels": own}
    service = render_service(spec)
    service["metadata"]["name"] = name
    service["spec"]["selector"] = own
    return [deployment, service]


def candidate_serving(
    deployment: Mapping[str, Any], replicas: int, serving: bool
) -> dict[str, Any]:
    """The candidate's Deployment at ``replicas`` pods, carrying the deployment's Service
    selector labels when ``serving`` (so the Service spreads requests over both variants'
    pods: the candidate's share is ``replicas / (replicas + primary replicas)``)."""
    body = copy.deepcopy(dict(deployment))
    name = body["spec"]["selector"]["matchLabels"][CANDIDATE_OF]
    labels = body["spec"]["template"]["metadata"]["labels"]
    selector = {_STD + "instance": name, _STD + "managed-by": MANAGED_BY}
    for key, value in selector.items():
        if serving:
            labels[key] = value
        else:
            labels.pop(key, None)
    body["spec"]["replicas"] = int(replicas)
    return body


def canary_replicas(percent: float, primary_replicas: int) -> int:
    """Candidate pods giving about ``percent`` of the requests beside ``primary_replicas``
    (at least one; 100 %: as many as the primary, i.e. half: the primary is replaced after)."""
    if percent >= 100:
        return max(primary_replicas, 1)
    share = percent / 100.0
    return max(1, round(primary_replicas * share / (1.0 - share)))
