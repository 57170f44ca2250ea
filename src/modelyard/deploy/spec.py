"""What a deploy asks for, checked before any target is touched."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from modelyard import image_contract as contract
from modelyard.errors import InvalidParameter

LOCAL = "local"
DOCKER = "docker"
KUBERNETES = "kubernetes"
TARGETS = (LOCAL, DOCKER, KUBERNETES)
# What every replica's server reads its auth URL from (modelyard.serving.config.ServeConfig).
AUTH_URL_ENV = contract.AUTH_URL_ENV


@dataclass(frozen=True)
class DeploySpec:
    """A rollout of model ``ref`` as service ``name`` on ``target``.

    ``auth_url``: the team server whose predict tokens every replica requires on its prediction
    routes (see :mod:`modelyard.serving.auth`). ``None`` keeps what the deployment has (a new
    one: no tokens), so a rollout that forgets it never opens a protected service; ``""`` turns
    tokens off.
    """

    ref: str
    name: str
    target: str = LOCAL
    port: int = contract.PORT
    replicas: int = 1
    timeout_s: float = 90.0
    auth_url: str | None = None

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
        if self.auth_url:
            check_auth_url(self.auth_url, self.target)


def check_auth_url(url: str, target: str) -> str:
    """``url`` if the replicas on ``target`` can ask that team server about tokens.

    The URL is checked the way the model server checks it. A container's 127.0.0.1 is the
    container itself (Docker replicas sit on a network of their own, pods in their own network
    namespace), so a loopback URL there would fail every prediction with 503: it is refused."""
    from modelyard.errors import ConfigError
    from modelyard.serving.config import check_auth_url as check_serving

    try:
        host = check_serving(url, f"auth URL {url!r}")
    except ConfigError as exc:
        raise InvalidParameter(exc.message) from None
    if target != LOCAL and _is_loopback(host):
        where, who, hint = (
            (
                "a replica container's",
                "containers",
                ", or http://host.docker.internal:PORT when "
                "it runs on this host (listening beyond loopback: modelyard server --host 0.0.0.0)",
            )
            if target == DOCKER
            else ("a pod's", "pods", "")
        )
        raise InvalidParameter(
            f"auth URL {url!r} is a loopback address, and {where} loopback is itself: no "
            "replica could reach the team server, so every prediction would get 503. Give an "
            f"address the {who} can reach: the team server's DNS name or network address{hint}"
        )
    return url


def _is_loopback(host: str) -> bool:
    import ipaddress

    name = host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        address = ipaddress.ip_address(name.split("%", 1)[0])
    except ValueError:
        return False
    mapped = getattr(address, "ipv4_mapped", None)
    if mapped is not None:
        address = mapped
    return address.is_loopback or address.is_unspecified


def default_target() -> str:
    """``docker`` when a docker command line is installed, else ``local``."""
    return DOCKER if shutil.which("docker") else LOCAL
