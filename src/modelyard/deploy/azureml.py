"""The ``azureml`` target: the model's pushed image as an Azure ML managed online endpoint.

An endpoint holds two deployments, ``blue`` and ``green``; each rollout writes the new version
into the one the previous revision did not use and then moves the endpoint's traffic, so the
version serving before keeps serving until the new one is ready (blue/green). A rollout is three
documents in the YAML of Azure ML's CLI v2, applied in order:

1. the managed online endpoint (``az ml online-endpoint create -f``; created once, then
   updated),
2. the managed online deployment with the custom image (``az ml online-deployment create -f``),
3. the endpoint again with its ``traffic`` and ``mirror_traffic``
   (``az ml online-endpoint update -f``).

The first rollout applies all three; a later one applies the last two (the endpoint exists).
How the traffic moves (``AzureMLOptions.traffic``; ``deploy --strategy shadow|canary`` maps
onto it, see :meth:`AzureMLOptions.with_strategy`): ``all_at_once`` sends all of it to the new
deployment (0 % to the old one, which keeps running until the next rollout overwrites it);
``canary`` sends ``traffic_percent`` % to the new one and the rest to the old one; ``shadow``
leaves all of it on the old one and mirrors ``traffic_percent`` % of it (at most 50, Azure ML's
bound) to the new one, whose answers Azure ML drops. :meth:`AzureMLTarget.plan` returns the
documents exactly as they are applied (``deploy --dry-run -o yaml``).

The image's custom-container contract is in the deployment's ``environment.inference_config``:
liveness on ``/v2/health/live``, readiness on ``/v2/health/ready`` and scoring on
``/invocations`` (MLflow's scoring format), all on port 8080 (:mod:`modelyard.image_contract`);
the model is in the image, so the deployment names no model and ``AZUREML_MODEL_DIR`` is not
read. Azure ML pulls the image from a registry it can reach (the workspace's ACR):
``modelyard push REF --registry NAME.azurecr.io/REPO``, or ``acr_repository`` names where a
copy is.

Rollouts go through an :class:`AzureMLApi` (default: :class:`MLClientApi` over azure-ai-ml's
``MLClient`` with ``DefaultAzureCredential``; ``pip install azure-ai-ml azure-identity``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from modelyard import image_contract as contract
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

if TYPE_CHECKING:
    from modelyard.store.deploy_entities import Deployment
    from modelyard.store.models_entities import ModelVersion
    from modelyard.workspace import Workspace

ENDPOINT_SCHEMA = "https://azuremlschemas.azureedge.net/latest/managedOnlineEndpoint.schema.json"
DEPLOYMENT_SCHEMA = (
    "https://azuremlschemas.azureedge.net/latest/managedOnlineDeployment.schema.json"
)
#: The two deployments of a blue/green endpoint, in the order they are used.
SLOTS = ("blue", "green")
#: How a rollout moves the endpoint's traffic to the new deployment.
TRAFFIC = ("all_at_once", "canary", "shadow")
#: Azure ML's bound on mirrored traffic.
MAX_MIRROR_PERCENT = 50
AUTH_MODES = ("key", "aml_token")
SCORING_PATH = "/invocations"

# Azure ML's rule for endpoint and deployment names.
_NAME = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]$")
_REGISTRY = re.compile(r"^[a-z0-9][a-z0-9.-]*(:\d{1,5})?(/[a-z0-9._-]+)+$")
_INSTANCE = re.compile(r"^[A-Za-z0-9_]{1,64}$")
# Azure's own rules: a subscription is a GUID; a resource group 1-90 of letters, digits,
# '-', '_', '.', '(' and ')' not ending in '.'; a workspace 3-33 of letters, digits, '-', '_'.
_WORKSPACE_PARTS = (
    ("subscription_id", re.compile(r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")),
    ("resource_group", re.compile(r"[-\w.()]{0,89}[-\w()]", re.ASCII)),
    ("aml_workspace", re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{2,32}")),
)


@dataclass(frozen=True)
class AzureMLOptions(TargetOptions):
    """Where and how the endpoint runs.

    ``subscription_id``, ``resource_group`` and ``aml_workspace`` name the Azure ML workspace
    (needed to roll out, not for a dry run); ``endpoint`` is the endpoint's name (default: the
    deployment's); ``instance_type`` the VM size (the spec's replicas are the instance count);
    ``acr_repository`` the repository Azure ML pulls the image from, by digest (default: where
    ``modelyard push`` put it); ``auth_mode`` ``key`` or ``aml_token``.

    ``traffic`` is how the traffic moves to the new deployment (``all_at_once``, ``canary``,
    ``shadow``, see the module) and ``traffic_percent`` the share a canary answers or a shadow
    gets a copy of. ``client`` is an :class:`AzureMLApi` (default: :class:`MLClientApi`)."""

    CLIENTS: ClassVar[tuple[str, ...]] = ("client",)
    PLATFORM_STRATEGIES: ClassVar[tuple[str, ...]] = (SHADOW, CANARY)

    subscription_id: str = ""
    resource_group: str = ""
    aml_workspace: str = ""
    endpoint: str | None = None
    instance_type: str = "Standard_DS3_v2"
    acr_repository: str | None = None
    auth_mode: str = "key"
    traffic: str = "all_at_once"
    traffic_percent: int = 10
    client: Any = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if self.endpoint is not None:
            _check_name(self.endpoint, "endpoint")
        for key, rule in _WORKSPACE_PARTS:
            value = getattr(self, key)
            if value and not rule.fullmatch(value):
                flag = key.replace("_", "-")
                raise InvalidParameter(f"--{flag} {value!r} is not an Azure {flag}")
        if not _INSTANCE.match(self.instance_type):
            raise InvalidParameter(f"{self.instance_type!r} is not an Azure VM size")
        if self.acr_repository and not _REGISTRY.match(self.acr_repository):
            raise InvalidParameter(
                f"{self.acr_repository!r} is not an image repository (NAME.azurecr.io/REPO)"
            )
        if self.auth_mode not in AUTH_MODES:
            raise InvalidParameter(f"auth_mode must be one of {', '.join(AUTH_MODES)}")
        if self.traffic not in TRAFFIC:
            raise InvalidParameter(f"traffic must be one of {', '.join(TRAFFIC)}")
        bound = MAX_MIRROR_PERCENT if self.traffic == "shadow" else 100
        if not 1 <= self.traffic_percent <= bound:
            raise InvalidParameter(
                f"traffic_percent must be between 1 and {bound} for {self.traffic}"
                + (" (Azure ML mirrors at most 50 %)" if self.traffic == "shadow" else "")
            )

    def with_strategy(self, asked: PlatformStrategy) -> AzureMLOptions:
        """``shadow``: mirror ``sample`` of the traffic to the new deployment; ``canary``: send
        it the first step's share (Azure ML shifts no further on its own: each next step is
        ``az ml online-endpoint update --traffic``, or a rollout with --traffic-percent)."""
        from dataclasses import replace

        if asked.strategy == SHADOW:
            return replace(self, traffic="shadow", traffic_percent=asked.sample_percent)
        if asked.first_percent >= 100:
            return replace(self, traffic="all_at_once")
        return replace(self, traffic="canary", traffic_percent=asked.first_percent)


def _check_name(name: str, what: str) -> str:
    if not _NAME.match(name):
        raise InvalidParameter(
            f"{name!r} is not an Azure ML {what} name: 3 to 32 letters, digits and '-', "
            "starting with a letter and ending with a letter or digit"
            + ("" if what != "endpoint" else "; give one with --endpoint")
        )
    return name


def endpoint_name(deployment: str, options: AzureMLOptions) -> str:
    """The endpoint's name: ``options.endpoint``, else ``deployment`` with every other
    character than letters, digits and '-' made '-'."""
    if options.endpoint:
        return options.endpoint
    return _check_name(re.sub(r"[^a-zA-Z0-9-]+", "-", deployment), "endpoint")


def _slots(existing: Deployment | None) -> tuple[str, str | None]:
    """``(slot this rollout writes, slot serving now or None)``."""
    if existing is None or not any(r.status != "failed" for r in existing.revisions):
        return SLOTS[0], None
    serving = existing.config.get("slot") if existing.config else None
    if serving not in SLOTS:
        serving = SLOTS[0]
    return SLOTS[1 - SLOTS.index(serving)], serving


def documents(request: RolloutRequest) -> list[dict[str, Any]]:
    """The endpoint, deployment and traffic documents a rollout applies, in order."""
    spec, version = request.spec, request.version
    options = options_of(spec, AzureMLOptions)
    endpoint = endpoint_name(spec.name, options)
    slot, serving = _slots(request.existing)
    image = request.image
    assert image is not None
    if options.acr_repository:
        image = f"{options.acr_repository}@{image.rpartition('@')[2]}"
    tags = {"modelyard-model": version.ref, "modelyard-deployment": spec.name}
    head: dict[str, Any] = {
        "$schema": ENDPOINT_SCHEMA,
        "name": endpoint,
        "auth_mode": options.auth_mode,
        "tags": tags,
    }
    route = {"port": contract.PORT}
    environment: dict[str, Any] = {"image": image}
    environment["inference_config"] = {
        "liveness_route": {"path": contract.LIVE_PATH, **route},
        "readiness_route": {"path": contract.READY_PATH, **route},
        "scoring_route": {"path": SCORING_PATH, **route},
    }
    deployment: dict[str, Any] = {
        "$schema": DEPLOYMENT_SCHEMA,
        "name": slot,
        "endpoint_name": endpoint,
        "environment": environment,
        "instance_type": options.instance_type,
        "instance_count": spec.replicas,
        "tags": tags,
    }
    if request.auth_url:
        deployment["environment_variables"] = {contract.AUTH_URL_ENV: request.auth_url}
    # Readiness may take the model's load time; Azure ML waits period x failure_threshold.
    deployment["readiness_probe"] = {
        "initial_delay": 10,
        "period": 10,
        "timeout": 2,
        "failure_threshold": max(3, int(spec.timeout_s) // 10),
    }
    traffic, mirror = _traffic(options, slot, serving)
    shift = {**head, "traffic": traffic, "mirror_traffic": mirror}
    return [deployment, shift] if serving is not None else [head, deployment, shift]


def _traffic(
    options: AzureMLOptions, slot: str, serving: str | None
) -> tuple[dict[str, int], dict[str, int]]:
    share = options.traffic_percent
    if serving is None or options.traffic == "all_at_once":
        return ({slot: 100} if serving is None else {slot: 100, serving: 0}), {}
    if options.traffic == "canary":
        return {slot: share, serving: 100 - share}, {}
    return {slot: 0, serving: 100}, {slot: share}


class AzureMLApi(Protocol):
    """What a rollout needs of Azure ML: apply one document (create or update the endpoint or
    deployment it describes) and wait until Azure ML has done it, raising
    :class:`~modelyard.errors.RolloutFailed` with Azure ML's reason if it could not."""

    def apply(self, document: dict[str, Any]) -> None: ...


class MLClientApi:
    """:class:`AzureMLApi` over azure-ai-ml's ``MLClient``: each document is loaded with
    azure-ai-ml's own loaders (``load_online_endpoint``, ``load_online_deployment``: the same
    schema ``az ml ... -f`` checks) and applied with ``begin_create_or_update(...).result()``."""

    def __init__(self, ml_client: Any) -> None:
        self.ml_client = ml_client

    @classmethod
    def for_options(cls, options: AzureMLOptions) -> MLClientApi:
        missing = [
            flag
            for flag, value in (
                ("--subscription-id", options.subscription_id),
                ("--resource-group", options.resource_group),
                ("--aml-workspace", options.aml_workspace),
            )
            if not value
        ]
        if missing:
            raise InvalidParameter(f"an Azure ML rollout needs {', '.join(missing)}")
        try:
            from azure.ai.ml import MLClient
            from azure.identity import DefaultAzureCredential
        except ImportError:
            raise DeployError(
                "deploying to Azure ML needs azure-ai-ml: pip install azure-ai-ml azure-identity"
            ) from None
        return cls(
            MLClient(
                DefaultAzureCredential(),
                options.subscription_id,
                options.resource_group,
                options.aml_workspace,
            )
        )

    def apply(self, document: dict[str, Any]) -> None:  # pragma: no cover - reaches Azure
        import io

        import yaml
        from azure.ai.ml import load_online_deployment, load_online_endpoint

        source = io.StringIO(yaml.safe_dump(document, sort_keys=False))
        try:
            if document["$schema"] == ENDPOINT_SCHEMA:
                operations = self.ml_client.online_endpoints
                entity = load_online_endpoint(source=source)
            else:
                operations = self.ml_client.online_deployments
                entity = load_online_deployment(source=source)
            operations.begin_create_or_update(entity).result()
        except Exception as exc:  # azure-core's HttpResponseError, the loaders' errors
            raise RolloutFailed(f"Azure ML refused {document['name']}: {exc}", str(exc)) from exc


class AzureMLTarget(TargetDefaults):
    """An Azure ML managed online endpoint; modelyard reaches it only through Azure ML's API."""

    name: str = "azureml"
    options_type: type[TargetOptions] = AzureMLOptions
    uses_images: bool = True
    publishes_port: bool = False
    default_replicas: int = 1
    default_timeout_s: float = 1800.0
    replica_network: ReplicaNetwork | None = ReplicaNetwork("an endpoint instance's", "endpoints")

    def image_for(self, version: ModelVersion) -> tuple[str | None, str | None]:
        return pushed_image(version, "Azure ML pulls from a registry", "NAME.azurecr.io/REPO")

    def plan(self, request: RolloutRequest) -> list[dict[str, Any]]:
        return documents(request)

    def rollout(self, request: RolloutRequest) -> Rollout:
        options = options_of(request.spec, AzureMLOptions)
        api: AzureMLApi = options.client or MLClientApi.for_options(options)
        docs = documents(request)
        repo = request.workspace.store.deployments
        for doc in docs:
            api.apply(doc)
            repo.add_event(request.spec.name, self.name, _applied(doc))
        shift = docs[-1]
        return Rollout(
            {
                **options.settings(),
                "endpoint": shift["name"],
                "slot": docs[-2]["name"],
                "endpoint_traffic": shift["traffic"],
                "mirror_traffic": shift["mirror_traffic"],
            },
            report=docs,
        )

    def recorded_options(self, dep: Deployment, *, client: object | None = None) -> TargetOptions:
        """The recorded options, all at once: a canary or a shadow is a choice about one
        rollout, and a rollback (or a retrain's rollout) serves its version fully."""
        from dataclasses import replace

        return replace(recorded(AzureMLOptions, dep, client), traffic="all_at_once")

    def is_running(self, ws: Workspace, dep: Deployment) -> bool:
        return True  # Azure ML keeps it running; modelyard does not watch it afterwards

    def replica_urls(self, ws: Workspace, dep: Deployment) -> list[str]:
        return []  # reached through the endpoint's scoring URI with its key or token

    def stop(self, ws: Workspace, dep: Deployment) -> None:
        raise DeployError(
            f"deployment {dep.name!r} runs on {self.name}; delete it with "
            f"az ml online-endpoint delete --name {self._endpoint(dep)}"
        )

    def logs(self, ws: Workspace, dep: Deployment, lines: int) -> str:
        slot = dep.config.get("slot", SLOTS[0]) if dep.config else SLOTS[0]
        raise DeployError(
            f"read the logs of {self.name} deployments with az ml online-deployment get-logs "
            f"--endpoint-name {self._endpoint(dep)} --name {slot} --lines {lines}"
        )

    def address(self, dep: Deployment) -> str:
        return f"azureml:{self._endpoint(dep)}"

    def _endpoint(self, dep: Deployment) -> str:
        found = dep.config.get("endpoint") if dep.config else None
        return str(found or endpoint_name(dep.name, recorded(AzureMLOptions, dep)))


def _applied(doc: dict[str, Any]) -> str:
    if doc["$schema"] == DEPLOYMENT_SCHEMA:
        return f"online-deployment {doc['endpoint_name']}/{doc['name']}"
    if "traffic" in doc:
        shares = ", ".join(f"{k}={v}" for k, v in doc["traffic"].items())
        mirror = ", ".join(f"{k}={v}" for k, v in doc["mirror_traffic"].items())
        return f"online-endpoint {doc['name']} traffic {shares}" + (
            f" mirror {mirror}" if mirror else ""
        )
    return f"online-endpoint {doc['name']}"
