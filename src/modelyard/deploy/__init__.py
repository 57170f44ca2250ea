"""Deploying model versions as named services: ``local`` (gunicorn on this host, no Docker),
``docker`` (replicas behind HAProxy), ``kubernetes`` (manifests applied and watched),
``sagemaker`` and ``azureml`` (the platforms' own endpoints, through their APIs).

Every rollout is a recorded revision; a new version that never becomes ready leaves the old
one serving and the revision marked failed with the replica's last log lines. Each target is a
:class:`DeployTarget` found by name in :mod:`modelyard.deploy.registry`; adding a target is one
new module plus one registry entry.
"""

from modelyard.deploy.azureml import AzureMLOptions
from modelyard.deploy.docker import DockerOptions
from modelyard.deploy.kubernetes.target import KubernetesOptions
from modelyard.deploy.local import LocalOptions
from modelyard.deploy.registry import get_target
from modelyard.deploy.sagemaker import SageMakerOptions
from modelyard.deploy.service import (
    DeploymentStatus,
    KubernetesPlan,
    deploy,
    deploy_kubernetes,
    events,
    get_deployment,
    list_deployments,
    logs,
    plan,
    recorded_auth_url,
    redeploy,
    rollback,
    status,
    stop,
)
from modelyard.deploy.spec import (
    DOCKER,
    KUBERNETES,
    LOCAL,
    TARGETS,
    DeploySpec,
    check_auth_url,
    default_target,
)
from modelyard.deploy.target import DeployTarget, TargetOptions

__all__ = [
    "AzureMLOptions",
    "DOCKER",
    "KUBERNETES",
    "LOCAL",
    "TARGETS",
    "DeploySpec",
    "DeployTarget",
    "DeploymentStatus",
    "DockerOptions",
    "KubernetesOptions",
    "KubernetesPlan",
    "LocalOptions",
    "SageMakerOptions",
    "TargetOptions",
    "check_auth_url",
    "default_target",
    "deploy",
    "deploy_kubernetes",
    "events",
    "get_deployment",
    "get_target",
    "list_deployments",
    "logs",
    "plan",
    "recorded_auth_url",
    "redeploy",
    "rollback",
    "status",
    "stop",
]
