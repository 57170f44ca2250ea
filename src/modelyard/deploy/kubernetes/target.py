"""The ``kubernetes`` target: the model's pushed image as a Deployment (with its Service, HPA
and PodDisruptionBudget), applied with server-side apply and its rollout watched."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from modelyard.deploy.target import (
    ReplicaNetwork,
    Rollout,
    RolloutRequest,
    TargetDefaults,
    TargetOptions,
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


class KubernetesTarget(TargetDefaults):
    """Pods on a cluster; modelyard reaches them only through the API server (``kubectl`` for
    their logs, scaling and deletion)."""

    name: str = "kubernetes"
    options_type: type[TargetOptions] = KubernetesOptions
    uses_images: bool = True
    publishes_port: bool = False  # a Service in the cluster; exposing it is the cluster's business
    default_replicas: int = 2
    default_timeout_s: float = 300.0
    replica_network: ReplicaNetwork | None = ReplicaNetwork("a pod's", "pods")

    def image_for(self, version: ModelVersion) -> tuple[str | None, str | None]:
        return pushed_image(version, "a cluster pulls from a registry", "HOST/PATH")

    def plan(self, request: RolloutRequest) -> list[dict[str, Any]]:
        from modelyard.deploy.kubernetes.manifests import KubeSpec, render_manifests
        from modelyard.packaging.dockerfile import lineage_labels

        spec, version = request.spec, request.version
        options = options_of(spec, KubernetesOptions)
        assert request.image is not None
        kube = KubeSpec(
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
        return render_manifests(kube)

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
