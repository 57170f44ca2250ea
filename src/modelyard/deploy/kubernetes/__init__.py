"""Deploying a model image to Kubernetes: manifests, server-side apply, a watched rollout and
modelyard's own rollback.

:class:`KubernetesTarget` is the deploy stage's ``kubernetes`` target (options:
:class:`KubernetesOptions`). ``render_manifests`` and ``to_yaml`` need nothing but PyYAML;
``deploy`` and ``rollback`` use the official client (``pip install 'modelyard[kubernetes]'``)
unless handed a :class:`KubeApi` such as :class:`FakeKubeApi`. The client is imported only when
a cluster is first contacted.
"""

from __future__ import annotations

from modelyard.deploy.kubernetes.apply import (
    KINDS,
    KubeApi,
    KubeRolloutResult,
    deploy,
    failure_reasons,
    rollback,
    rollout_status,
)
from modelyard.deploy.kubernetes.client import FIELD_MANAGER, OfficialKubeApi
from modelyard.deploy.kubernetes.fake import FakeKubeApi
from modelyard.deploy.kubernetes.manifests import (
    KubeSpec,
    check_name,
    check_namespace,
    label_value,
    render_manifests,
    to_yaml,
)
from modelyard.deploy.kubernetes.target import KubernetesOptions, KubernetesTarget

__all__ = [
    "FIELD_MANAGER",
    "KINDS",
    "FakeKubeApi",
    "KubeApi",
    "KubeRolloutResult",
    "KubeSpec",
    "KubernetesOptions",
    "KubernetesTarget",
    "OfficialKubeApi",
    "check_name",
    "check_namespace",
    "deploy",
    "failure_reasons",
    "label_value",
    "render_manifests",
    "rollback",
    "rollout_status",
    "to_yaml",
]
