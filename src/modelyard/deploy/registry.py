"""Every deploy target, by name: the one place that knows which targets exist.

Adding a target is one new module plus one entry here: a class implementing
:class:`~modelyard.deploy.target.DeployTarget` (with its ``…Options`` dataclass) and its
instance in :data:`TARGETS`. The CLI's ``--target`` choices, ``DeploySpec`` validation, the
deploy stage, the monitor and the dashboard all find targets through :func:`get_target`.
"""

from __future__ import annotations

import shutil
from typing import TYPE_CHECKING

from modelyard.deploy.azureml import AzureMLTarget
from modelyard.deploy.docker import DockerTarget
from modelyard.deploy.kubernetes.target import KubernetesTarget
from modelyard.deploy.local import LocalTarget
from modelyard.deploy.sagemaker import SageMakerTarget
from modelyard.errors import InvalidParameter

if TYPE_CHECKING:
    from modelyard.deploy.target import DeployTarget
    from modelyard.store.deploy_entities import Deployment

TARGETS: dict[str, DeployTarget] = {
    target.name: target
    for target in (
        LocalTarget(),
        DockerTarget(),
        KubernetesTarget(),
        SageMakerTarget(),
        AzureMLTarget(),
    )
}


def get_target(name: str) -> DeployTarget:
    """The target called ``name``; :class:`~modelyard.errors.InvalidParameter` naming the
    choices when there is none."""
    try:
        return TARGETS[name]
    except KeyError:
        raise InvalidParameter(
            f"unknown target {name!r}; choose one of {', '.join(TARGETS)}"
        ) from None


def target_of(dep: Deployment) -> DeployTarget:
    """The target ``dep`` runs on."""
    return get_target(dep.target)


def default_target() -> str:
    """``docker`` when a docker command line is installed, else ``local``."""
    return DockerTarget.name if shutil.which("docker") else LocalTarget.name
