"""What a deploy asks for, checked before any target is touched."""

from __future__ import annotations

from dataclasses import dataclass

from modelyard import image_contract as contract
from modelyard.deploy import registry
from modelyard.deploy.azureml import AzureMLTarget
from modelyard.deploy.docker import DockerTarget
from modelyard.deploy.kubernetes.target import KubernetesTarget
from modelyard.deploy.local import LocalTarget
from modelyard.deploy.sagemaker import SageMakerTarget
from modelyard.deploy.target import REPLACE, DeployTarget, TargetOptions
from modelyard.errors import InvalidParameter

# The names of the built-in targets, and of every registered one.
LOCAL = LocalTarget.name
DOCKER = DockerTarget.name
KUBERNETES = KubernetesTarget.name
SAGEMAKER = SageMakerTarget.name
AZUREML = AzureMLTarget.name
TARGETS = tuple(registry.TARGETS)
# What every replica's server reads its auth URL from (modelyard.serving.config.ServeConfig).
AUTH_URL_ENV = contract.AUTH_URL_ENV


@dataclass(frozen=True)
class DeploySpec:
    """A rollout of model ``ref`` as service ``name`` on ``target``.

    ``port`` is the host port of targets that publish one (``local``, ``docker``); ``options``
    are the target's own settings (:class:`~modelyard.deploy.local.LocalOptions`,
    :class:`~modelyard.deploy.docker.DockerOptions`,
    :class:`~modelyard.deploy.kubernetes.KubernetesOptions`,
    :class:`~modelyard.deploy.sagemaker.SageMakerOptions`,
    :class:`~modelyard.deploy.azureml.AzureMLOptions`; ``None``: that target's defaults).
    ``strategy`` is how the new version takes over: ``replace`` (the only one so far; shadow
    and canary rollouts will be others, see :mod:`modelyard.deploy.target`).

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
    options: TargetOptions | None = None
    strategy: str = REPLACE

    def __post_init__(self) -> None:
        from modelyard.refs import validate_name

        validate_name(self.name, "deployment name")
        target = self.deploy_target
        if self.options is not None and not isinstance(self.options, target.options_type):
            raise InvalidParameter(
                f"the {self.target} target takes {target.options_type.__name__}, "
                f"not {type(self.options).__name__}"
            )
        if self.strategy not in target.strategies:
            raise InvalidParameter(
                f"the {self.target} target cannot roll out with strategy {self.strategy!r}; "
                f"it can: {', '.join(target.strategies)}"
            )
        if not 0 < self.port < 65536:
            raise InvalidParameter(f"port {self.port} is not a port number")
        if not 1 <= self.replicas <= 64:
            raise InvalidParameter(f"replicas must be between 1 and 64, not {self.replicas}")
        if self.timeout_s <= 0:
            raise InvalidParameter("the readiness timeout must be positive")
        if self.auth_url:
            check_auth_url(self.auth_url, self.target)

    @property
    def deploy_target(self) -> DeployTarget:
        """The target this spec rolls out on (from :mod:`modelyard.deploy.registry`)."""
        return registry.get_target(self.target)


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
    network = registry.get_target(target).replica_network
    if network is not None and _is_loopback(host):
        raise InvalidParameter(
            f"auth URL {url!r} is a loopback address, and {network.where} loopback is itself: "
            "no replica could reach the team server, so every prediction would get 503. Give "
            f"an address the {network.who} can reach: the team server's DNS name or network "
            f"address{network.hint}"
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


default_target = registry.default_target
