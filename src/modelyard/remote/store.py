"""The metadata store of a team server: a :class:`~modelyard.store.protocols.MetadataStore`
over HTTP.

Each repository implements its protocol method by method (``mypy --strict`` holds every class
here to it): calling ``store.runs.log_metrics(run_id, points)`` validates the arguments against
the protocol's signature, posts them, and rebuilds the returned frozen dataclasses from the
protocol's return type, so library code cannot tell the difference. A method the protocol
marks local-only (it needs the database itself) raises :class:`~modelyard.errors.ServerSideOnly`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn, TypeVar, cast

from modelyard.errors import ConfigError, ServerSideOnly
from modelyard.remote.client import RemoteClient
from modelyard.store.protocols import (
    DatasetStore,
    DeploymentStore,
    LineageStore,
    MetadataStore,
    ModelStore,
    MonitoringStore,
    PipelineStore,
    RunStore,
    TokenStore,
)

if TYPE_CHECKING:
    from modelyard.remote.protocol import MethodSpec

F = TypeVar("F", bound=Callable[..., Any])


class RemoteRepository:
    """One repository of the server; subclasses list their protocol's methods."""

    repo: ClassVar[str]

    def __init__(self, client: RemoteClient, specs: dict[str, MethodSpec]) -> None:
        self._client = client
        self._specs = specs

    def _call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        spec = self._specs.get(name)
        if spec is None:
            raise ServerSideOnly(
                f"{self.repo}.{name} is not available through the server: it runs next to the "
                f"database only (this workspace talks to {self._client.url})"
            )
        body = self._client.post(spec.path, spec.payload(args, kwargs))
        return spec.result(body["result"])

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self._client.url!r})"


def _remote(method: F) -> F:
    """The protocol's ``method`` as an HTTP call, with the protocol's own signature and type."""
    name = method.__name__

    @functools.wraps(method)
    def call(self: RemoteRepository, *args: Any, **kwargs: Any) -> Any:
        return self._call(name, args, kwargs)

    return cast(F, call)  # the wrapper keeps the protocol method's signature (functools.wraps)


class RemoteDatasets(RemoteRepository):
    repo = "datasets"

    add_version = _remote(DatasetStore.add_version)
    get = _remote(DatasetStore.get)
    all = _remote(DatasetStore.all)
    versions = _remote(DatasetStore.versions)
    get_version = _remote(DatasetStore.get_version)
    get_version_by_id = _remote(DatasetStore.get_version_by_id)


class RemoteRuns(RemoteRepository):
    repo = "runs"

    create = _remote(RunStore.create)
    finish = _remote(RunStore.finish)
    heartbeat = _remote(RunStore.heartbeat)
    log_params = _remote(RunStore.log_params)
    set_tags = _remote(RunStore.set_tags)
    log_metrics = _remote(RunStore.log_metrics)
    add_artifact = _remote(RunStore.add_artifact)
    resolve_id = _remote(RunStore.resolve_id)
    get = _remote(RunStore.get)
    search = _remote(RunStore.search)
    count = _remote(RunStore.count)
    metric_history = _remote(RunStore.metric_history)
    count_metrics = _remote(RunStore.count_metrics)
    metric_counts = _remote(RunStore.metric_counts)
    artifacts = _remote(RunStore.artifacts)
    artifact_names = _remote(RunStore.artifact_names)
    page = _remote(RunStore.page)
    metric_keys = _remote(RunStore.metric_keys)
    pipelines = _remote(RunStore.pipelines)


class RemoteLineage(RemoteRepository):
    repo = "lineage"

    add = _remote(LineageStore.add)
    edges_from = _remote(LineageStore.edges_from)
    edges_to = _remote(LineageStore.edges_to)
    edges_touching = _remote(LineageStore.edges_touching)


class RemoteModels(RemoteRepository):
    repo = "models"

    add_version = _remote(ModelStore.add_version)
    get_version = _remote(ModelStore.get_version)
    get_version_by_id = _remote(ModelStore.get_version_by_id)
    versions = _remote(ModelStore.versions)
    versions_of_run = _remote(ModelStore.versions_of_run)
    set_status = _remote(ModelStore.set_status)
    set_description = _remote(ModelStore.set_description)
    set_tags = _remote(ModelStore.set_tags)
    remove_tags = _remote(ModelStore.remove_tags)
    set_trusted = _remote(ModelStore.set_trusted)
    set_image = _remote(ModelStore.set_image)
    get = _remote(ModelStore.get)
    all = _remote(ModelStore.all)
    set_gate = _remote(ModelStore.set_gate)
    move_alias = _remote(ModelStore.move_alias)
    alias_history = _remote(ModelStore.alias_history)
    add_approval = _remote(ModelStore.add_approval)
    approvals = _remote(ModelStore.approvals)


class RemotePipelines(RemoteRepository):
    repo = "pipelines"

    create_run = _remote(PipelineStore.create_run)
    update_step = _remote(PipelineStore.update_step)
    finish_run = _remote(PipelineStore.finish_run)
    resolve_id = _remote(PipelineStore.resolve_id)
    get = _remote(PipelineStore.get)
    list = _remote(PipelineStore.list)
    cache_get = _remote(PipelineStore.cache_get)
    cache_put = _remote(PipelineStore.cache_put)


class RemoteDeployments(RemoteRepository):
    repo = "deployments"

    create = _remote(DeploymentStore.create)
    find = _remote(DeploymentStore.find)
    get = _remote(DeploymentStore.get)
    all = _remote(DeploymentStore.all)
    update = _remote(DeploymentStore.update)
    add_revision = _remote(DeploymentStore.add_revision)
    finish_revision = _remote(DeploymentStore.finish_revision)
    add_event = _remote(DeploymentStore.add_event)
    events = _remote(DeploymentStore.events)


class RemoteMonitoring(RemoteRepository):
    repo = "monitoring"

    add_report = _remote(MonitoringStore.add_report)
    set_fired = _remote(MonitoringStore.set_fired)
    get_report = _remote(MonitoringStore.get_report)
    reports = _remote(MonitoringStore.reports)
    add_action = _remote(MonitoringStore.add_action)
    finish_action = _remote(MonitoringStore.finish_action)
    actions = _remote(MonitoringStore.actions)
    acquire_lease = _remote(MonitoringStore.acquire_lease)
    renew_lease = _remote(MonitoringStore.renew_lease)
    release_lease = _remote(MonitoringStore.release_lease)
    leases = _remote(MonitoringStore.leases)


class RemoteTokens(RemoteRepository):
    repo = "tokens"

    create = _remote(TokenStore.create)
    authenticate = _remote(TokenStore.authenticate)
    list = _remote(TokenStore.list)
    get = _remote(TokenStore.get)
    revoke = _remote(TokenStore.revoke)
    has_active_admin = _remote(TokenStore.has_active_admin)


class RemoteStore:
    """The store of a team server. There is no ``db`` here: code that needs SQL runs on the
    server, not in a client."""

    def __init__(self, client: RemoteClient) -> None:
        from modelyard.remote.protocol import method_specs

        self.client = client
        self.url = client.url
        specs: dict[str, dict[str, MethodSpec]] = {}
        for spec in method_specs():
            specs.setdefault(spec.repo, {})[spec.name] = spec
        # Each annotation makes mypy hold a repository class to its protocol.
        self.datasets: DatasetStore = RemoteDatasets(client, specs.get("datasets", {}))
        self.runs: RunStore = RemoteRuns(client, specs.get("runs", {}))
        self.lineage: LineageStore = RemoteLineage(client, specs.get("lineage", {}))
        self.models: ModelStore = RemoteModels(client, specs.get("models", {}))
        self.pipelines: PipelineStore = RemotePipelines(client, specs.get("pipelines", {}))
        self.deployments: DeploymentStore = RemoteDeployments(client, specs.get("deployments", {}))
        self.monitoring: MonitoringStore = RemoteMonitoring(client, specs.get("monitoring", {}))
        self.tokens: TokenStore = RemoteTokens(client, specs.get("tokens", {}))

    @classmethod
    def connect(cls, url: str, token: str | None = None) -> RemoteStore:
        """A store talking to ``url``; no request is made until the first call."""
        return cls(RemoteClient(url, token))

    @property
    def db(self) -> NoReturn:
        raise ConfigError(
            "this workspace talks to a modelyard server (MODELYARD_URL); direct database "
            "access is only available on the server"
        )

    def close(self) -> None:
        self.client.close()

    def __repr__(self) -> str:
        return f"RemoteStore({self.url!r})"


if TYPE_CHECKING:

    def _holds_to_the_contract(store: RemoteStore) -> MetadataStore:
        return store  # mypy: the remote store is a MetadataStore, repository by repository
