"""The contract of the metadata store: one :class:`~typing.Protocol` per repository and
:class:`MetadataStore` for the whole.

Two implementations hold to it, checked by ``mypy --strict``: the SQL store
(:class:`modelyard.store.Store`, SQLite or PostgreSQL) and the client of a team server
(:class:`modelyard.remote.RemoteStore`). :attr:`modelyard.workspace.Workspace.store` is typed as
:class:`MetadataStore`, so no stage knows which one it holds. The team server's store API is
derived from these protocols (:mod:`modelyard.remote.protocol`): every method here is either
exposed over HTTP with a permission, or marked local-only (it needs the database itself, and
runs on the server only); a test fails for a method that is neither.

Arguments and results are plain values (``str``, numbers, ``dict``/``list`` of them, and the
frozen dataclasses of each stage's ``<stage>_entities`` module), so the remote
client can send them as JSON and rebuild them exactly.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

from modelyard.store.data_entities import Dataset, DatasetVersion
from modelyard.store.deploy_entities import Deployment, DeploymentEvent, DeploymentRevision
from modelyard.store.models_entities import AliasMove, Approval, ModelVersion, RegisteredModel
from modelyard.store.monitor_entities import Lease, MonitorAction, MonitorReport
from modelyard.store.pipeline_entities import PipelineRun
from modelyard.store.server_entities import ApiToken
from modelyard.store.tracking import MetricPoint
from modelyard.store.tracking_entities import Edge, Metric, Run, RunArtifact


class DatasetStore(Protocol):
    """The dataset versions (``modelyard data``)."""

    def add_version(
        self,
        name: str,
        *,
        digest: str,
        kind: str,
        format: str,
        size: int,
        file_count: int,
        schema: dict[str, Any] | None,
        profile: dict[str, Any] | None,
        source: str | None,
        description: str | None = None,
        created_by: str | None = None,
    ) -> tuple[DatasetVersion, bool]:
        """Version N+1 of ``name`` for ``digest``, or the existing version with that
        digest."""
        ...

    def get(self, name: str) -> Dataset: ...

    def all(self) -> list[Dataset]: ...

    def versions(self, name: str) -> list[DatasetVersion]: ...

    def get_version(
        self, name: str, version: int | None = None, *, digest: str | None = None
    ) -> DatasetVersion:
        """A version by number, by digest, or the latest when neither is given."""
        ...

    def get_version_by_id(self, version_id: int) -> DatasetVersion: ...


class RunStore(Protocol):
    """Tracked runs: parameters, metrics, tags, artifacts."""

    def create(
        self,
        run_id: str,
        *,
        name: str | None = None,
        pipeline: str | None = None,
        parent_id: str | None = None,
        git_commit: str | None = None,
        git_dirty: bool | None = None,
        git_diff_digest: str | None = None,
        python_version: str | None = None,
        environment_digest: str | None = None,
        host: str | None = None,
        user: str | None = None,
    ) -> Run: ...

    def finish(self, run_id: str, status: str, error: str | None = None) -> None: ...

    def heartbeat(self, run_id: str) -> None: ...

    def log_params(self, run_id: str, params: dict[str, str]) -> None:
        """Parameters are write-once, as in every tracker users know: re-logging the same
        value is fine, changing one is an error (a run describes one configuration)."""
        ...

    def set_tags(self, run_id: str, tags: dict[str, str]) -> None: ...

    def log_metrics(self, run_id: str, points: Sequence[MetricPoint]) -> None: ...

    def add_artifact(self, run_id: str, name: str, digest: str, kind: str, size: int) -> None: ...

    def resolve_id(self, id_or_prefix: str) -> str:
        """A full run id from a unique prefix of at least 4 characters, like git."""
        ...

    def get(self, id_or_prefix: str) -> Run: ...

    def search(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        status: str | None = None,
        pipeline: str | None = None,
        parent_id: str | None = None,
        heartbeat_before: datetime | None = None,
        heartbeat_since: datetime | None = None,
    ) -> list[Run]:
        """Newest first. ``heartbeat_before``/``heartbeat_since`` split running runs into
        lost and live ones in the query, so a limit still returns ``limit`` rows."""
        ...

    def count(self) -> int: ...

    def metric_history(self, run_id: str, key: str | None = None) -> list[Metric]: ...

    def count_metrics(self, run_ids: Iterable[str] | None = None) -> int: ...

    def metric_counts(self, run_id: str) -> dict[str, int]:
        """How many points each metric of ``run_id`` has, counted by the database (a run can
        log millions of points; reading them all to count them is what this avoids)."""
        ...

    def artifacts(self, run_id: str) -> list[RunArtifact]: ...

    def artifact_names(self, digest: str) -> list[str]:
        """Every name under which any run logged the blob ``digest`` (for lineage
        labels)."""
        ...

    def page(
        self,
        *,
        limit: int = 50,
        offset: int = 0,
        status: str | None = None,
        pipeline: str | None = None,
        text: str | None = None,
        sort: str = "start_time",
        descending: bool = True,
        metric: str | None = None,
    ) -> tuple[list[Run], int]:
        """One page of runs and the number of runs matching the filters (for the
        dashboard)."""
        ...

    def metric_keys(self, run_ids: Iterable[str]) -> list[str]:
        """The metric names logged by any of ``run_ids`` (for the compare view's charts)."""
        ...

    def pipelines(self) -> list[str]:
        """Every pipeline name that has runs (the dashboard's filter choices)."""
        ...


class LineageStore(Protocol):
    """Typed arrows between records, written by every stage."""

    def add(
        self, source_type: str, source_id: str, target_type: str, target_id: str, relation: str
    ) -> None:
        """Record ``source --relation--> target``; recording the same arrow twice is a no-
        op."""
        ...

    def edges_from(self, node_type: str, node_id: str) -> list[Edge]: ...

    def edges_to(self, node_type: str, node_id: str) -> list[Edge]: ...

    def edges_touching(self, node_type: str, node_id: str) -> list[Edge]: ...


class ModelStore(Protocol):
    """The model registry: versions, aliases, gates, approvals."""

    def add_version(
        self,
        name: str,
        *,
        digest: str,
        flavor: str,
        signature: dict[str, Any] | None,
        requirements: dict[str, str] | None,
        run_id: str | None,
        source: str | None,
        description: str | None = None,
        tags: dict[str, str] | None = None,
        trusted_pickle: bool = False,
        trusted_by: str | None = None,
        created_by: str | None = None,
    ) -> ModelVersion:
        """Version N+1 of ``name`` (the model is created on its first version)."""
        ...

    def get_version(
        self,
        name: str,
        version: int | None = None,
        *,
        digest: str | None = None,
        alias: str | None = None,
    ) -> ModelVersion:
        """A version by number, digest (newest with it) or alias; with none of them, the
        latest *active* version: an archived version is never picked implicitly."""
        ...

    def get_version_by_id(self, version_id: int) -> ModelVersion: ...

    def versions(self, name: str) -> list[ModelVersion]: ...

    def versions_of_run(self, run_id: str) -> list[ModelVersion]:
        """Every version registered from ``run_id`` (for lineage and ``runs show``)."""
        ...

    def set_status(self, name: str, version: int, status: str) -> ModelVersion: ...

    def set_description(self, name: str, version: int | None, description: str | None) -> None:
        """Describe a version, or the model itself when ``version`` is None."""
        ...

    def set_tags(self, name: str, version: int, tags: dict[str, str]) -> None: ...

    def remove_tags(self, name: str, version: int, keys: Sequence[str]) -> None: ...

    def set_trusted(self, name: str, version: int, trusted: bool, actor: str | None) -> None: ...

    def set_image(
        self,
        name: str,
        version: int,
        *,
        image_id: str | None,
        image_digest: str | None,
        image_size: int | None,
        image_ref: str | None,
    ) -> None:
        """Record the image a version was built into (the packaging stage calls this)."""
        ...

    def get(self, name: str) -> RegisteredModel: ...

    def all(self) -> list[RegisteredModel]: ...

    def set_gate(self, name: str, gate: dict[str, Any] | None) -> None: ...

    def move_alias(
        self,
        name: str,
        alias: str,
        version: int | None,
        *,
        actor: str | None,
        reason: str | None = None,
        forced: bool = False,
        failed_checks: list[str] | None = None,
    ) -> AliasMove:
        """Point ``alias`` at ``version`` (None removes it) and append the move to the
        history, in one transaction: the history can never miss a move or record one that
        failed. ``forced`` says the caller may override failed checks; it is recorded only
        with the ``failed_checks`` it overrode (forcing past nothing is no override)."""
        ...

    def alias_history(self, name: str, alias: str | None = None) -> list[AliasMove]: ...

    def add_approval(
        self, name: str, version: int, *, actor: str | None, comment: str | None = None
    ) -> Approval: ...

    def approvals(self, name: str, version: int) -> list[Approval]: ...


class PipelineStore(Protocol):
    """Pipeline runs, their steps, and the step cache."""

    def create_run(
        self,
        run_id: str,
        *,
        pipeline: str,
        pipeline_file: str,
        params: Mapping[str, Any],
        runner: str,
        steps: Sequence[str],
        resumed_from: str | None = None,
    ) -> None:
        """The pipeline run and one pending row per step, in one transaction. ``run_id`` is
        the id of the pipeline's tracked run."""
        ...

    def update_step(self, pipeline_run_id: str, step: str, /, **values: Any) -> None: ...

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None: ...

    def resolve_id(self, id_or_prefix: str) -> str: ...

    def get(self, id_or_prefix: str) -> PipelineRun: ...

    def list(self, pipeline: str | None = None, limit: int = 50) -> list[PipelineRun]:
        """Newest first, with their steps."""
        ...

    def cache_get(self, cache_key: str) -> tuple[dict[str, dict[str, str]], str | None] | None:
        """``(outputs, run_id)`` published under ``cache_key``, or None."""
        ...

    def cache_put(
        self,
        cache_key: str,
        *,
        pipeline: str,
        step: str,
        outputs: Mapping[str, Mapping[str, str]],
        run_id: str | None,
    ) -> None: ...


class DeploymentStore(Protocol):
    """Deployments, their revisions and events."""

    def create(
        self, name: str, target: str, *, port: int | None, replicas: int, config: dict[str, Any]
    ) -> Deployment: ...

    def find(self, name: str) -> Deployment | None: ...

    def get(self, name: str) -> Deployment: ...

    def all(self) -> list[Deployment]: ...

    def update(
        self,
        name: str,
        *,
        status: str | None = None,
        port: int | None = None,
        replicas: int | None = None,
        config: dict[str, Any] | None = None,
    ) -> Deployment: ...

    def add_revision(
        self,
        name: str,
        *,
        model_name: str,
        model_version: int,
        image_ref: str | None,
        image_digest: str | None,
        replicas: int,
    ) -> DeploymentRevision:
        """A new pending revision numbered after the highest one."""
        ...

    def finish_revision(
        self, name: str, revision: int, *, ok: bool, detail: str | None = None
    ) -> Deployment:
        """Record a rollout's outcome: on success the revision becomes current (the previous
        one superseded); on failure the deployment is marked failed and keeps its
        current."""
        ...

    def add_event(self, name: str, kind: str, message: str) -> None: ...

    def events(self, name: str, limit: int = 50) -> list[DeploymentEvent]: ...


class MonitoringStore(Protocol):
    """Monitor reports, the actions they started, and leases."""

    def add_report(
        self,
        deployment: str,
        *,
        model_name: str | None,
        model_version: int | None,
        window_end: datetime | None,
        metrics: Mapping[str, Any],
        details: Mapping[str, Any],
        fired: Sequence[Mapping[str, Any]] = (),
    ) -> MonitorReport: ...

    def set_fired(self, report_id: int, fired: Sequence[Mapping[str, Any]]) -> None: ...

    def get_report(self, report_id: int) -> MonitorReport: ...

    def reports(self, deployment: str | None = None, *, limit: int = 50) -> list[MonitorReport]:
        """Newest first."""
        ...

    def add_action(
        self,
        *,
        report_id: int | None,
        deployment: str,
        policy: str,
        action: str,
        status: str,
        reason: str | None = None,
        detail: Mapping[str, Any] | None = None,
        finished: bool = False,
    ) -> MonitorAction: ...

    def finish_action(
        self,
        action_id: int,
        status: str,
        *,
        reason: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> MonitorAction: ...

    def actions(
        self,
        deployment: str | None = None,
        *,
        policy: str | None = None,
        action: str | None = None,
        limit: int = 50,
    ) -> list[MonitorAction]:
        """Newest first."""
        ...

    def acquire_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        """Take ``name`` for ``holder`` unless someone else holds an unexpired lease on
        it."""
        ...

    def renew_lease(self, name: str, holder: str, ttl_seconds: float) -> bool:
        """Push the expiry out; False when the lease is no longer ours."""
        ...

    def release_lease(self, name: str, holder: str) -> bool:
        """Drop the lease if ``holder`` still has it (never someone else's)."""
        ...

    def leases(self) -> list[Lease]: ...


class TokenStore(Protocol):
    """The team server's API tokens."""

    def create(
        self,
        name: str,
        role: str,
        *,
        expires_at: datetime | None = None,
        created_by: str | None = None,
    ) -> tuple[ApiToken, str]:
        """A new token and its secret (returned once, never stored)."""
        ...

    def authenticate(self, secret: str) -> ApiToken | None:
        """The active token with this secret, or None (unknown, expired or revoked
        alike)."""
        ...

    def list(self, *, include_inactive: bool = True) -> list[ApiToken]: ...

    def get(self, token_id: str) -> ApiToken: ...

    def revoke(self, token_id: str) -> ApiToken:
        """Revoke a token (idempotent); later requests with it get 401."""
        ...

    def has_active_admin(self) -> bool: ...


class MetadataStore(Protocol):
    """The metadata of one workspace: its repositories, by stage."""

    @property
    def url(self) -> str:
        """Where the store lives: its database URL, or the team server's URL."""
        ...

    @property
    def datasets(self) -> DatasetStore: ...

    @property
    def runs(self) -> RunStore: ...

    @property
    def lineage(self) -> LineageStore: ...

    @property
    def models(self) -> ModelStore: ...

    @property
    def pipelines(self) -> PipelineStore: ...

    @property
    def deployments(self) -> DeploymentStore: ...

    @property
    def monitoring(self) -> MonitoringStore: ...

    @property
    def tokens(self) -> TokenStore: ...

    def close(self) -> None:
        """Release connections; the store is not used afterwards."""
        ...


def repository_protocols() -> dict[str, type]:
    """Each repository attribute of :class:`MetadataStore` and its protocol, e.g.
    ``{"runs": RunStore, ...}``: what the team server exposes is derived from this."""
    import typing

    return {
        name: hint
        for name, prop in vars(MetadataStore).items()
        if isinstance(prop, property)
        and prop.fget is not None
        and isinstance(hint := typing.get_type_hints(prop.fget).get("return"), type)
        and hint is not str
    }


def protocol_methods(protocol: type) -> list[str]:
    """The public methods a repository protocol declares, in declaration order."""
    return [name for name, value in vars(protocol).items() if callable(value) and name[0] != "_"]
