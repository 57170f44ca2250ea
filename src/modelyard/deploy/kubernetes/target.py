"""The ``kubernetes`` target: the model's pushed image as a Deployment (with its Service, HPA
and PodDisruptionBudget), applied with server-side apply and its rollout watched."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from modelyard.deploy.target import (
    CANARY,
    REPLACE,
    ReplicaNetwork,
    Rollout,
    RolloutRequest,
    TargetDefaults,
    TargetOptions,
    TrafficSplit,
    options_of,
    pushed_image,
    recorded,
)
from modelyard.errors import DeployError, RolloutFailed
from modelyard.image_contract import AUTH_URL_ENV

if TYPE_CHECKING:
    from modelyard.deploy.kubernetes.apply import KubeApi
    from modelyard.store.deploy_entities import Deployment
    from modelyard.store.models_entities import ModelVersion
    from modelyard.workspace import Workspace


@dataclass(frozen=True)
class KubernetesOptions(TargetOptions):
    """Where and how the Deployment runs: its ``namespace``, and the HorizontalPodAutoscaler's
    bounds (``min_replicas`` defaults to the spec's replicas, ``max_replicas`` to the larger of
    the two) and CPU utilisation target. ``api`` reaches the cluster (default: the official
    client with the local kubeconfig; :class:`~modelyard.deploy.kubernetes.FakeKubeApi` in
    tests)."""

    CLIENTS: ClassVar[tuple[str, ...]] = ("api",)

    namespace: str = "default"
    min_replicas: int | None = None
    max_replicas: int | None = None
    cpu_target: int = 70
    api: KubeApi | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        from modelyard.deploy.kubernetes.manifests import check_namespace

        check_namespace(self.namespace)


#: The cluster client a deployment's candidate was started with, for the rest of its rollout
#: (clients are never recorded; None: the official client).
_CANDIDATE_APIS: dict[str, KubeApi | None] = {}


class KubernetesTarget(TargetDefaults):
    """Pods on a cluster; modelyard reaches them only through the API server (``kubectl`` for
    their logs, scaling and deletion)."""

    name: str = "kubernetes"
    options_type: type[TargetOptions] = KubernetesOptions
    uses_images: bool = True
    publishes_port: bool = False  # a Service in the cluster; exposing it is the cluster's business
    default_replicas: int = 2
    default_timeout_s: float = 300.0
    # canary by replica ratio (shadow needs a mirror the cluster routes: not built)
    strategies: tuple[str, ...] = (REPLACE, CANARY)
    replica_network: ReplicaNetwork | None = ReplicaNetwork("a pod's", "pods")

    def image_for(self, version: ModelVersion) -> tuple[str | None, str | None]:
        return pushed_image(version, "a cluster pulls from a registry", "HOST/PATH")

    def plan(self, request: RolloutRequest) -> list[dict[str, Any]]:
        from modelyard.deploy.kubernetes.manifests import render_manifests

        return render_manifests(self._kube_spec(request))

    def _kube_spec(self, request: RolloutRequest) -> Any:
        from modelyard.deploy.kubernetes.manifests import KubeSpec
        from modelyard.packaging.dockerfile import lineage_labels

        spec, version = request.spec, request.version
        options = options_of(spec, KubernetesOptions)
        assert request.image is not None
        return KubeSpec(
            name=spec.name,
            namespace=options.namespace,
            image=request.image,
            model=version.name,
            version=str(version.version),
            replicas=spec.replicas,
            min_replicas=options.min_replicas,
            max_replicas=options.max_replicas,
            cpu_target=options.cpu_target,
            labels=lineage_labels(request.workspace, version),
            env={AUTH_URL_ENV: request.auth_url} if request.auth_url else {},
        )

    def rollout(self, request: RolloutRequest) -> Rollout:
        from modelyard.deploy.kubernetes.apply import deploy

        spec, version = request.spec, request.version
        options = options_of(spec, KubernetesOptions)
        repo = request.workspace.store.deployments
        result = deploy(
            self.plan(request),
            namespace=options.namespace,
            timeout_s=spec.timeout_s,
            api=options.api,
            on_event=lambda msg: repo.add_event(spec.name, self.name, msg),
        )
        if not result.ok:
            reasons = "; ".join(result.reasons) or result.outcome
            raise RolloutFailed(
                f"{version.ref} did not roll out in {options.namespace}/{spec.name} "
                f"({result.outcome}): {reasons}",
                reasons,
            )
        return Rollout(options.settings(), report=result)

    def is_running(self, ws: Workspace, dep: Deployment) -> bool:
        return True  # the cluster keeps it running; modelyard does not watch it afterwards

    def replica_urls(self, ws: Workspace, dep: Deployment) -> list[str]:
        return []  # pod addresses are inside the cluster

    def stop(self, ws: Workspace, dep: Deployment) -> None:
        raise DeployError(
            f"deployment {dep.name!r} runs on {self.name}; scale or delete it with kubectl"
        )

    def logs(self, ws: Workspace, dep: Deployment, lines: int) -> str:
        raise DeployError(f"logs of {self.name} deployments: use kubectl logs")

    def address(self, dep: Deployment) -> str:
        return f"{recorded(KubernetesOptions, dep).namespace}/{dep.name}"

    # A canary by replica ratio: a Deployment <name>-candidate whose pods join the deployment's
    # Service (its selector labels) at each step, scaled to the step's share of the pods.
    def start_candidate(self, request: RolloutRequest) -> Rollout:
        from modelyard.deploy.kubernetes.manifests import candidate_serving, render_candidate

        manifests = render_candidate(self._kube_spec(request))
        manifests[0] = candidate_serving(manifests[0], 1, serving=False)
        options = options_of(request.spec, KubernetesOptions)
        # The client is never recorded: the rollout's later calls reach the same cluster.
        _CANDIDATE_APIS[request.spec.name] = options.api
        self._apply(manifests, options.namespace, request.spec.timeout_s, options.api,
                    request.version.ref)  # fmt: skip
        return Rollout({"manifest": manifests[0], "namespace": options.namespace,
                        "timeout_s": request.spec.timeout_s})  # fmt: skip

    def _apply(
        self, manifests: list[dict[str, Any]], namespace: str, timeout_s: float,
        api: KubeApi | None, what: str,
    ) -> None:  # fmt: skip
        from modelyard.deploy.kubernetes.apply import deploy

        result = deploy(manifests, namespace=namespace, timeout_s=timeout_s, api=api)
        if not result.ok:
            reasons = "; ".join(result.reasons) or result.outcome
            raise RolloutFailed(f"candidate {what} did not become ready in {namespace}: "
                                f"{reasons}", reasons)  # fmt: skip

    def _candidate(self, dep: Deployment) -> dict[str, Any]:
        candidate = (dep.config or {}).get("candidate")
        if not candidate or "manifest" not in candidate:
            raise DeployError(f"deployment {dep.name!r} has no candidate running")
        return dict(candidate)

    def set_split(self, ws: Workspace, dep: Deployment, split: TrafficSplit | None) -> None:
        from modelyard.deploy.kubernetes.manifests import canary_replicas, candidate_serving

        if split is not None and split.mode != CANARY:
            raise DeployError(f"the {self.name} target has no {split.mode} (only canary)")
        candidate = self._candidate(dep)
        replicas = canary_replicas(split.percent, dep.replicas) if split is not None else 1
        body = candidate_serving(candidate["manifest"], replicas, serving=split is not None)
        api = _CANDIDATE_APIS.get(dep.name)
        self._apply([body], candidate["namespace"], float(candidate["timeout_s"]), api,
                    f"{dep.name} candidate")  # fmt: skip

    def candidate_fault(self, ws: Workspace, dep: Deployment) -> str | None:
        from modelyard.deploy.kubernetes.client import OfficialKubeApi
        from modelyard.deploy.kubernetes.manifests import CANDIDATE_OF

        candidate = self._candidate(dep)
        api = _CANDIDATE_APIS.get(dep.name) or OfficialKubeApi.from_config()
        pods = api.list_pods(candidate["namespace"], f"{CANDIDATE_OF}={dep.name}")
        for pod in pods:
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                if int(status.get("restartCount") or 0) > 0:
                    name = (pod.get("metadata") or {}).get("name")
                    return f"candidate pod {name} restarted {status['restartCount']} time(s)"
        return None

    def stop_candidate(self, ws: Workspace, dep: Deployment) -> None:
        from modelyard.deploy.kubernetes.client import OfficialKubeApi
        from modelyard.deploy.kubernetes.manifests import candidate_name

        candidate = (dep.config or {}).get("candidate") or {}
        if not candidate and dep.name not in _CANDIDATE_APIS:
            return  # stopped already, or never started
        namespace = candidate.get("namespace") or recorded(KubernetesOptions, dep).namespace
        api = _CANDIDATE_APIS.pop(dep.name, None) or OfficialKubeApi.from_config()
        for kind in ("Deployment", "Service"):
            api.delete(kind, candidate_name(dep.name), namespace)
