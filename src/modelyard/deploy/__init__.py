"""Deploying model versions as named services: ``local`` (gunicorn on this host, no Docker),
``docker`` (replicas behind HAProxy) and ``kubernetes`` (manifests applied and watched).

Every rollout is a recorded revision; a new version that never becomes ready leaves the old
one serving and the revision marked failed with the replica's last log lines.
"""

from modelyard.deploy.service import (
    DeploymentStatus,
    KubernetesPlan,
    deploy,
    deploy_kubernetes,
    events,
    get_deployment,
    list_deployments,
    logs,
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

__all__ = [
    "DOCKER",
    "KUBERNETES",
    "LOCAL",
    "TARGETS",
    "DeploySpec",
    "DeploymentStatus",
    "KubernetesPlan",
    "check_auth_url",
    "default_target",
    "deploy",
    "deploy_kubernetes",
    "events",
    "get_deployment",
    "list_deployments",
    "logs",
    "recorded_auth_url",
    "redeploy",
    "rollback",
    "status",
    "stop",
]
