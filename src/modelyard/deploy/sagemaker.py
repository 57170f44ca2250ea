"""The ``sagemaker`` target: the model's pushed image as a SageMaker real-time endpoint.

A rollout is three SageMaker API requests (boto3's ``sagemaker`` client): ``CreateModel`` (the
image, which SageMaker starts as ``IMAGE serve``: see :mod:`modelyard.serving.__main__`),
``CreateEndpointConfig`` with one production variant, then ``CreateEndpoint`` for a new
deployment or ``UpdateEndpoint`` with a blue/green ``DeploymentConfig`` (all at once, canary or
linear traffic shifting, CloudWatch alarms that roll it back) for an existing one; then the
endpoint is polled with ``DescribeEndpoint`` until it is ``InService``. :meth:`plan` returns
those requests exactly as they are sent (``deploy --dry-run -o json``).

The image must be in a registry SageMaker pulls from (ECR): ``modelyard push REF --registry
ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO`` with the credentials :func:`ecr_credentials` reads
from ECR's ``GetAuthorizationToken``; ``ecr_repository`` names that repository, and the endpoint
runs the image by its digest there.
"""

from __future__ import annotations

import re
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
from modelyard.errors import DeployError, InvalidParameter, RolloutFailed
from modelyard.image_contract import AUTH_URL_ENV

if TYPE_CHECKING:
    from modelyard.store.deploy_entities import Deployment
    from modelyard.store.models_entities import ModelVersion
    from modelyard.workspace import Workspace

#: How the new fleet takes the traffic on an UpdateEndpoint (SageMaker's own names, lower case).
TRAFFIC = ("all_at_once", "canary", "linear")
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
    ``client`` is a boto3 ``sagemaker`` client (default: boto3's, for ``region``)."""

    CLIENTS: ClassVar[tuple[str, ...]] = ("client",)

    role_arn: str = ""
    region: str = "us-east-1"
    instance_type: str = "ml.m5.large"
    ecr_repository: str | None = None
    traffic: str = "all_at_once"
    traffic_percent: int = 10
    wait_s: int = 300
    alarms: tuple[str, ...] = ()
    poll_s: float = 15.0
    client: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "alarms", tuple(self.alarms))  # a list when read back
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
    image = request.image
    assert image is not None
    if options.ecr_repository:
        digest = image.rpartition("@")[2]
        image = f"{options.ecr_repository}@{digest}"
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
                "ProductionVariants": [
                    {
                        "VariantName": "AllTraffic",
                        "ModelName": model,
                        "InstanceType": options.instance_type,
                        "InitialInstanceCount": spec.replicas,
                        "InitialVariantWeight": 1.0,
                    }
                ],
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


def _deployment_config(options: SageMakerOptions, timeout_s: float) -> dict[str, Any]:
    routing: dict[str, Any] = {"Type": options.traffic.upper(), "WaitIntervalInSeconds": 0}
    size = {"Type": "CAPACITY_PERCENT", "Value": options.traffic_percent}
    if options.traffic == "canary":
        routing.update(WaitIntervalInSeconds=options.wait_s, CanarySize=size)
    elif options.traffic == "linear":
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
        return pushed_image(
            version, "SageMaker pulls from ECR", "ACCOUNT.dkr.ecr.REGION.amazonaws.com/REPO"
        )

    def plan(self, request: RolloutRequest) -> list[dict[str, Any]]:
        return requests(request)

    def rollout(self, request: RolloutRequest) -> Rollout:
        import time

        spec = request.spec
        options = options_of(spec, SageMakerOptions)
        client = _client(options)
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
            },
            report=calls,
        )

    def is_running(self, ws: Workspace, dep: Deployment) -> bool:
        return True  # SageMaker keeps it running; modelyard does not watch it afterwards

    def replica_urls(self, ws: Workspace, dep: Deployment) -> list[str]:
        return []  # reached through SageMaker's runtime API with AWS credentials

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
