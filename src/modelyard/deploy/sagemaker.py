"""The ``sagemaker`` target: the model's pushed image as a SageMaker real-time endpoint.

A rollout is three SageMaker API requests (boto3's ``sagemaker`` client): ``CreateModel`` (the
image, which SageMaker starts as ``IMAGE serve``: see :mod:`modelyard.serving.__main__`),
``CreateEndpointConfig`` with one production variant, then ``CreateEndpoint`` for a new
deployment or ``UpdateEndpoint`` with a blue/green ``DeploymentConfig`` (all at once, canary or
linear traffic shifting, CloudWatch alarms that roll it back) for an existing one; then the
endpoint is polled with ``DescribeEndpoint`` until it is ``InService``. :meth:`plan` returns
those requests exactly as they are sent (``deploy --dry-run -o json``).

``traffic="shadow"`` puts the new model in a shadow variant beside the serving one
(``ShadowProductionVariants``): SageMaker copies ``traffic_percent`` % of the requests to it and
drops its answers, while the serving model keeps answering every request.

The image must be in a registry SageMaker pulls from (ECR); ``ecr_repository`` names that
repository (``ACCOUNT.dkr.ecr.REGION.amazonaws.com/PATH/MODEL``), and the endpoint runs the
image by its digest there. With ``push`` the rollout pushes the built image there first, logged
in with the credentials :func:`ecr_credentials` reads from ECR's ``GetAuthorizationToken`` (whose
``proxyEndpoint`` is the registry to push to); else ``modelyard push REF --registry
ACCOUNT.dkr.ecr.REGION.amazonaws.com/PATH`` does it beforehand.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from modelyard.deploy.target import (
    CANARY,
    SHADOW,
    PlatformStrategy,
    ReplicaNetwork,
    Rollout,
    RolloutRequest,
    TargetDefaults,
    TargetOptions,
    options_of,
    pushed_image,
    recorded,
)
from modelyard.errors import DeployError, InvalidParameter, RolloutFailed
from modelyard.image_contract import AUTH_URL_ENV

if TYPE_CHECKING:
    from modelyard.deploy.traffic import ReplicaHealth
    from modelyard.packaging.push import PushResult
    from modelyard.store.deploy_entities import Deployment
    from modelyard.store.models_entities import ModelVersion
    from modelyard.workspace import Workspace

#: How the new fleet takes the traffic on an UpdateEndpoint (SageMaker's own names, lower case),
#: or ``shadow``: the new model as a shadow variant beside the serving one.
TRAFFIC = ("all_at_once", "canary", "linear", "shadow")
SHADOW_VARIANT = "Shadow"
_REGION = re.compile(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?")
_ROLE = re.compile(r"^arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$")
_REPO = re.compile(r"^\d{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com(\.cn)?/[a-z0-9._/-]+$")


@dataclass(frozen=True)
class SageMakerOptions(TargetOptions):
    """Where and how the endpoint runs: the IAM ``role_arn`` SageMaker assumes (required),
    ``region``, ``instance_type`` (the spec's replicas are the instance count), and the ECR
    ``ecr_repository`` holding the image (default: where ``modelyard push`` put it).

    ``traffic`` is how an update shifts traffic to the new fleet (``all_at_once``, ``canary``:
    ``traffic_percent`` of the capacity first, ``linear``: steps of ``traffic_percent``), with
    ``wait_s`` between steps; a CloudWatch alarm in ``alarms`` going off rolls the update back.
    ``shadow``: the new model is a shadow variant getting a copy of ``traffic_percent`` % of
    the requests. ``push``: push the built image to ``ecr_repository`` first.
    ``client`` is a boto3 ``sagemaker`` client (default: boto3's, for ``region``), ``ecr_client``
    a boto3 ``ecr`` one and ``engine`` the Docker engine that pushes (for ``push``)."""

    CLIENTS: ClassVar[tuple[str, ...]] = ("client", "ecr_client", "engine")
    PLATFORM_STRATEGIES: ClassVar[tuple[str, ...]] = (SHADOW, CANARY)

    role_arn: str = ""
    region: str = "us-east-1"
    instance_type: str = "ml.m5.large"
    ecr_repository: str | None = None
    traffic: str = "all_at_once"
    traffic_percent: int = 10
    wait_s: int = 300
    alarms: tuple[str, ...] = ()
    poll_s: float = 15.0
    push: bool = False
    client: Any = field(default=None, compare=False)
    ecr_client: Any = field(default=None, compare=False)
    engine: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "alarms", tuple(self.alarms))  # a list when read back
        if not _REGION.fullmatch(self.region):  # botocore's rule: it becomes a host name
            raise InvalidParameter(f"{self.region!r} is not an AWS region (like eu-west-1)")
        if self.role_arn and not _ROLE.match(self.role_arn):
            raise InvalidParameter(f"{self.role_arn!r} is not an IAM role ARN")
        if self.ecr_repository and not _REPO.match(self.ecr_repository):
            raise InvalidParameter(
                f"{self.ecr_repository!r} is not an ECR repository "
                "(ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME)"
            )
        if self.traffic not in TRAFFIC:
            raise InvalidParameter(f"traffic must be one of {', '.join(TRAFFIC)}")
        if not 1 <= self.traffic_percent <= 100:
            raise InvalidParameter("traffic_percent must be between 1 and 100")
        if not 0 <= self.wait_s <= 3600:
            raise InvalidParameter("wait_s must be between 0 and 3600 (SageMaker's bounds)")
        if self.push and not self.ecr_repository:
            raise InvalidParameter("--push needs the ECR repository to push to: --ecr-repository")

    def with_strategy(self, asked: PlatformStrategy) -> SageMakerOptions:
        """``shadow``: a shadow variant copied ``sample`` of the requests; ``canary``: blue/green
        traffic shifting, ``linear`` when the steps grow evenly (5, 10 … 100: steps of the
        first), else ``canary`` with the first step's share, ``interval_s`` between steps."""
        from dataclasses import replace

        if asked.strategy == SHADOW:
            return replace(self, traffic="shadow", traffic_percent=asked.sample_percent)
        if asked.first_percent >= 100:
            return replace(self, traffic="all_at_once")
        return replace(
            self,
            traffic="linear" if asked.linear else "canary",
            traffic_percent=asked.first_percent,
            wait_s=min(3600, int(asked.interval_s)),
        )


def _object_name(*parts: str) -> str:
    """A SageMaker object name (``[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}``) from ``parts``."""
    name = re.sub(r"[^a-zA-Z0-9]+", "-", "-".join(parts)).strip("-")
    return name[:63].rstrip("-")


def _revision(request: RolloutRequest) -> int:
    existing = request.existing
    return len(existing.revisions) + 1 if existing is not None else 1


def _has_endpoint(request: RolloutRequest) -> bool:
    existing = request.existing
    return existing is not None and any(r.status != "failed" for r in existing.revisions)


def requests(request: RolloutRequest) -> list[dict[str, Any]]:
    """The SageMaker API requests a rollout sends, in order: ``{"operation": ..., "params":
    ...}`` with ``params`` exactly as boto3 takes them."""
    spec, version = request.spec, request.version
    options = options_of(spec, SageMakerOptions)
    if not options.role_arn:
        raise InvalidParameter(
            "the sagemaker target needs the IAM role SageMaker runs the model as: --role-arn "
            "arn:aws:iam::ACCOUNT:role/NAME"
        )
    image = _image(request, options)
    revision = _revision(request)
    model = _object_name(spec.name, version.name, f"v{version.version}", f"r{revision}")
    config = _object_name(spec.name, f"r{revision}")
    env = {AUTH_URL_ENV: request.auth_url} if request.auth_url else {}
    tags = [
        {"Key": "modelyard:model", "Value": version.ref},
        {"Key": "modelyard:deployment", "Value": spec.name},
    ]
    container: dict[str, Any] = {"Image": image, "Mode": "SingleModel"}
    if env:
        container["Environment"] = env
    variants = [
        {
            "VariantName": "AllTraffic",
            "ModelName": model,
            "InstanceType": options.instance_type,
            "InitialInstanceCount": spec.replicas,
            "InitialVariantWeight": 1.0,
        }
    ]
    endpoint_config: dict[str, Any] = {"EndpointConfigName": config}
    serving = request.existing.config.get("model") if request.existing is not None else None
    if options.traffic == "shadow" and _has_endpoint(request) and serving:
        shadow = {**variants[0], "VariantName": SHADOW_VARIANT}
        shadow["InitialVariantWeight"] = options.traffic_percent / 100
        variants[0]["ModelName"] = serving
        endpoint_config["ShadowProductionVariants"] = [shadow]
    calls: list[dict[str, Any]] = [
        {
            "operation": "CreateModel",
            "params": {
                "ModelName": model,
                "PrimaryContainer": container,
                "ExecutionRoleArn": options.role_arn,
                "Tags": tags,
            },
        },
        {
            "operation": "CreateEndpointConfig",
            "params": {
                "EndpointConfigName": config,
                "ProductionVariants": variants,
                **{k: v for k, v in endpoint_config.items() if k != "EndpointConfigName"},
                "Tags": tags,
            },
        },
    ]
    endpoint: dict[str, Any] = {
        "EndpointName": _object_name(spec.name),
        "EndpointConfigName": config,
    }
    if _has_endpoint(request):
        endpoint["DeploymentConfig"] = _deployment_config(options, spec.timeout_s)
        calls.append({"operation": "UpdateEndpoint", "params": endpoint})
    else:
        calls.append({"operation": "CreateEndpoint", "params": {**endpoint, "Tags": tags}})
    return calls


def _image(request: RolloutRequest, options: SageMakerOptions) -> str:
    """What CreateModel names: the pushed image by digest, in ``ecr_repository`` if given (for
    a dry run of a ``push`` whose digest is not known yet: the tag the push will write)."""
    image = request.image
    assert image is not None
    name, at, digest = image.partition("@")
    if options.ecr_repository:
        if not at:
            return f"{options.ecr_repository}:{request.version.version}"
        return f"{options.ecr_repository}@{digest}"
    if not at:
        raise DeployError(
            f"{request.version.ref} has no pushed image; SageMaker pulls from ECR: "
            "--ecr-repository ACCOUNT.dkr.ecr.REGION.amazonaws.com/PATH/MODEL --push"
        )
    return image


def _deployment_config(options: SageMakerOptions, timeout_s: float) -> dict[str, Any]:
    traffic = "all_at_once" if options.traffic == "shadow" else options.traffic
    routing: dict[str, Any] = {"Type": traffic.upper(), "WaitIntervalInSeconds": 0}
    size = {"Type": "CAPACITY_PERCENT", "Value": options.traffic_percent}
    if traffic == "canary":
        routing.update(WaitIntervalInSeconds=options.wait_s, CanarySize=size)
    elif traffic == "linear":
        routing.update(WaitIntervalInSeconds=options.wait_s, LinearStepSize=size)
    policy: dict[str, Any] = {
        "TrafficRoutingConfiguration": routing,
        "TerminationWaitInSeconds": min(options.wait_s, 3600),
        "MaximumExecutionTimeoutInSeconds": max(600, min(int(timeout_s), 28800)),
    }
    config: dict[str, Any] = {"BlueGreenUpdatePolicy": policy}
    if options.alarms:
        config["AutoRollbackConfiguration"] = {
            "Alarms": [{"AlarmName": alarm} for alarm in options.alarms]
        }
    return config


def _client(options: SageMakerOptions) -> Any:
    if options.client is not None:
        return options.client
    import boto3

    return boto3.client("sagemaker", region_name=options.region)


def _method(operation: str) -> str:
    return re.sub(r"(?<!^)([A-Z])", r"_\1", operation).lower()


@dataclass(frozen=True)
class RegistryCredentials:
    """A registry login: what ``docker login -u USERNAME -p PASSWORD REGISTRY`` takes."""

    username: str
    password: str
    registry: str


def ecr_credentials(ecr: Any) -> RegistryCredentials:
    """The ECR registry login from ``ecr.get_authorization_token()`` (``ecr``: a boto3 ``ecr``
    client): its token is base64 of ``AWS:PASSWORD``."""
    import base64

    data = ecr.get_authorization_token()["authorizationData"]
    if not data:
        raise DeployError("ECR returned no authorization token")
    user, _, password = base64.b64decode(data[0]["authorizationToken"]).decode().partition(":")
    registry = data[0]["proxyEndpoint"].removeprefix("https://")
    return RegistryCredentials(user, password, registry)


def push_to_ecr(ws: Workspace, version: ModelVersion, options: SageMakerOptions) -> PushResult:
    """Push ``version``'s built image to ``options.ecr_repository`` (whose last part must be the
    model's name: pushes go to ``REGISTRY/.../MODEL``), logged in with the credentials of ECR's
    authorization token; the registry pushed to is the token's ``proxyEndpoint``."""
    from modelyard.packaging import push_model_image

    assert options.ecr_repository is not None
    parent, _, model = options.ecr_repository.partition("/")[2].rpartition("/")
    if model != version.name.lower():
        raise InvalidParameter(
            f"--push pushes {version.ref} to a repository named after the model: "
            f"--ecr-repository ...amazonaws.com/{parent + '/' if parent else ''}"
            f"{version.name.lower()}, not {options.ecr_repository}"
        )
    ecr = options.ecr_client
    if ecr is None:
        import boto3

        ecr = boto3.client("ecr", region_name=options.region)
    login = ecr_credentials(ecr)
    return push_model_image(
        version.ref,
        "/".join(p for p in (login.registry, parent) if p),
        workspace=ws,
        engine=options.engine,
        username=login.username,
        password=login.password,
    )


class SageMakerTarget(TargetDefaults):
    """A SageMaker real-time endpoint; modelyard reaches it only through the SageMaker API."""

    name: str = "sagemaker"
    options_type: type[TargetOptions] = SageMakerOptions
    uses_images: bool = True
    publishes_port: bool = False
    default_replicas: int = 1
    default_timeout_s: float = 1800.0
    replica_network: ReplicaNetwork | None = ReplicaNetwork("an endpoint instance's", "endpoints")

    def image_for(self, version: ModelVersion) -> tuple[str | None, str | None]:
        if version.image_digest is None and version.image_id is not None:
            return version.image_id, None  # built, not pushed: a rollout with push pushes it
        return pushed_image(
            version, "SageMaker pulls from ECR", "ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO"
        )

    def plan(self, request: RolloutRequest) -> list[dict[str, Any]]:
        return requests(request)

    def recorded_options(self, dep: Deployment, *, client: object | None = None) -> TargetOptions:
        """The recorded options (``client``: a sagemaker client; the ECR client and the engine
        are made when needed); a shadow was a choice about one rollout, so a rollback or a
        retrain's rollout takes all the traffic."""
        from dataclasses import replace

        options = SageMakerOptions.from_settings(dep.config, client=client)
        return replace(options, traffic="all_at_once") if options.traffic == "shadow" else options

    def rollout(self, request: RolloutRequest) -> Rollout:
        import time

        spec = request.spec
        options = options_of(spec, SageMakerOptions)
        client = _client(options)
        if options.push:
            from dataclasses import replace

            pushed = push_to_ecr(request.workspace, request.version, options)
            request = replace(request, image=pushed.ref)
            request.workspace.store.deployments.add_event(
                spec.name, self.name, f"pushed {pushed.ref}"
            )
        calls = requests(request)
        repo = request.workspace.store.deployments
        for call in calls:
            getattr(client, _method(call["operation"]))(**call["params"])
            repo.add_event(spec.name, self.name, f"{call['operation']} {_named(call['params'])}")
        endpoint = calls[-1]["params"]["EndpointName"]
        deadline = time.monotonic() + spec.timeout_s
        while True:
            found = client.describe_endpoint(EndpointName=endpoint)
            state = found["EndpointStatus"]
            if state == "InService":
                break
            if state in ("Failed", "RollingBack", "OutOfService") or time.monotonic() > deadline:
                reason = found.get("FailureReason") or f"endpoint {endpoint} is {state}"
                raise RolloutFailed(f"{request.version.ref} did not roll out: {reason}", reason)
            time.sleep(options.poll_s)
        return Rollout(
            {
                **options.settings(),
                "endpoint": endpoint,
                "endpoint_config": calls[1]["params"]["EndpointConfigName"],
                "endpoint_arn": found.get("EndpointArn"),
                # The model answering requests (a shadow's serving one is the earlier model).
                "model": calls[1]["params"]["ProductionVariants"][0]["ModelName"],
            },
            report=calls,
        )

    def is_running(self, ws: Workspace, dep: Deployment) -> bool:
        return True  # SageMaker keeps it running; modelyard does not watch it afterwards

    def replica_urls(self, ws: Workspace, dep: Deployment) -> list[str]:
        return []  # reached through SageMaker's runtime API with AWS credentials

    def ready_replicas(
        self, ws: Workspace, dep: Deployment, health: tuple[ReplicaHealth, ...]
    ) -> int:
        """The instances serving now, as SageMaker describes the endpoint (``DescribeEndpoint``:
        its production variants' ``CurrentInstanceCount`` while it is ``InService``, else 0)."""
        from botocore.exceptions import BotoCoreError, ClientError

        options = recorded(SageMakerOptions, dep)
        endpoint = str(dep.config.get("endpoint") or _object_name(dep.name))
        try:
            found = _client(options).describe_endpoint(EndpointName=endpoint)
        except (BotoCoreError, ClientError) as exc:
            raise DeployError(
                f"cannot describe SageMaker endpoint {endpoint} in {options.region}: {exc}"
            ) from exc
        if found.get("EndpointStatus") != "InService":
            return 0
        variants = found.get("ProductionVariants") or []
        return sum(int(v.get("CurrentInstanceCount") or 0) for v in variants)

    def stop(self, ws: Workspace, dep: Deployment) -> None:
        raise DeployError(
            f"deployment {dep.name!r} runs on {self.name}; delete it with "
            f"aws sagemaker delete-endpoint --endpoint-name {_object_name(dep.name)}"
        )

    def logs(self, ws: Workspace, dep: Deployment, lines: int) -> str:
        raise DeployError(
            f"logs of {self.name} deployments are in CloudWatch: /aws/sagemaker/Endpoints/"
            f"{_object_name(dep.name)}"
        )

    def address(self, dep: Deployment) -> str:
        return f"sagemaker:{recorded(SageMakerOptions, dep).region}/{_object_name(dep.name)}"


def _named(params: dict[str, Any]) -> str:
    for key in ("ModelName", "EndpointConfigName", "EndpointName"):
        if key in params:
            return str(params[key])
    return ""
