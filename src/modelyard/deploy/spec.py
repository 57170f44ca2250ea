"""What a deploy asks for, checked before any target is touched."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from modelyard.errors import InvalidParameter

LOCAL = "local"
DOCKER = "docker"
KUBERNETES = "kubernetes"
TARGETS = (LOCAL, DOCKER, KUBERNETES)


@dataclass(frozen=True)
class DeploySpec:
    """A rollout of model ``ref`` as service ``name`` on ``target``."""

    ref: str
    name: str
    target: str = LOCAL
    port: int = 8080
    replicas: int = 1
    timeout_s: float = 90.0

    def __post_init__(self) -> None:
        from modelyard.refs import validate_name

        validate_name(self.name, "deployment name")
        if self.target not in TARGETS:
            raise InvalidParameter(
                f"unknown target {self.target!r}; choose one of {', '.join(TARGETS)}"
            )
        if not 0 < self.port < 65536:
            raise InvalidParameter(f"port {self.port} is not a port number")
        if not 1 <= self.replicas <= 64:
            raise InvalidParameter(f"replicas must be between 1 and 64, not {self.replicas}")
        if self.timeout_s <= 0:
            raise InvalidParameter("the readiness timeout must be positive")


def default_target() -> str:
    """``docker`` when a docker command line is installed, else ``local``."""
    return DOCKER if shutil.which("docker") else LOCAL
