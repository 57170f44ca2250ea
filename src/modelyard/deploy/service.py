"""Deploy, roll back, stop and inspect named services; every rollout is a recorded revision.

One path for every target: :func:`deploy` resolves the version, takes the deployment's lease,
records a revision and hands the rollout to the target found in
:mod:`modelyard.deploy.registry` (a :class:`~modelyard.deploy.target.DeployTarget`), which only
starts, switches and stops what serves. A failed rollout becomes a failed revision with the
replicas' last log lines while the previous revision keeps serving. :func:`redeploy` rolls
another version out the way a deployment is deployed now (rollbacks and the monitor's retrains
both go through it).

A deployment's ``auth_url`` (predict tokens required by every replica) is part of its record, so
every later rollout — a new version, a rollback, a retrain — keeps it. modelyard itself never
needs a token for a deployed server: readiness and rollout checks, ``deployments status`` and the
monitor read only the routes a server leaves open (health, model metadata, ``/metrics``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelyard.deploy.registry import target_of
from modelyard.deploy.spec import DeploySpec
from modelyard.deploy.target import PROGRESSIVE, Rollout, RolloutRequest, TrafficSplit
from modelyard.errors import DeployError, RolloutFailed
from modelyard.models.trust import check_code_trust

if TYPE_CHECKING:
    from modelyard.deploy.kubernetes.apply import KubeApi, KubeRolloutResult
    from modelyard.deploy.traffic import ReplicaHealth, TrafficStats
    from modelyard.store.deploy_entities import Deployment, DeploymentEvent
    from modelyard.workspace import Workspace


@dataclass(frozen=True)
class DeploymentStatus:
    """``replicas`` are the addresses probed (a ``local`` service has one, its gunicorn port,
    whatever its worker count); ``ready_replicas`` counts the replicas (local: workers) that
    serve. ``traffic`` is the whole service's: Docker replicas are summed, and a multi-worker
    server's ``/metrics`` already totals its workers."""

    deployment: Deployment
    replicas: tuple[ReplicaHealth, ...]
    traffic: TrafficStats
    uptime_s: float | None
    ready_replicas: int = 0

    @property
    def healthy(self) -> bool:
        return bool(self.replicas) and all(r.ready for r in self.replicas)

    @property
    def auth_url(self) -> str | None:
        """The team server whose predict tokens the replicas require (None: no tokens)."""
        return recorded_auth_url(self.deployment)

    @property
    def request_rate(self) -> float | None:
        """Mean requests per second since the current revision started."""
        if not self.uptime_s:
            return None
        return self.traffic.requests / self.uptime_s


def deploy(spec: DeploySpec, *, workspace: Workspace | None = None) -> Deployment:
    """Roll ``spec.ref`` out as ``spec.name`` on ``spec.target``: create the service, or switch
    it to the new version without dropping a request. On failure the revision is recorded as
    failed with the replicas' logs, the old version keeps serving, and :class:`RolloutFailed`
    is raised.

    A ``shadow`` or ``canary`` spec is a progressive rollout, which needs its analysis between
    steps: :func:`modelyard.monitor.progressive.rollout` runs it."""
    if spec.strategy in PROGRESSIVE:
        from modelyard.errors import InvalidParameter

        raise InvalidParameter(
            f"a {spec.strategy} rollout is analysed step by step: run it with "
            "modelyard.monitor.progressive.rollout (modelyard deploy --strategy)"
        )
    return _deploy(spec, workspace)[0]


def plan(spec: DeploySpec, *, workspace: Workspace | None = None) -> list[dict[str, Any]] | None:
    """What rolling ``spec`` out would apply, without applying or recording anything
    (Kubernetes: its manifests); ``None`` for a target with nothing to show."""
    from modelyard.workspace import resolve as resolve_workspace

    ws = resolve_workspace(workspace)
    return spec.deploy_target.plan(_request(ws, spec, ws.store.deployments.find(spec.name)))


def _request(ws: Workspace, spec: DeploySpec, existing: Deployment | None) -> RolloutRequest:
    from modelyard.models import resolve

    version = resolve(spec.ref, ws)
    check_code_trust(version)  # again at deploy time: a revoked trust stops the next rollout
    image, _ = spec.deploy_target.image_for(version)
    same = existing if existing is not None and existing.target == spec.target else None
    return RolloutRequest(ws, spec, version, image, _auth_url(spec.auth_url, same), existing)


def _deploy(spec: DeploySpec, workspace: Workspace | None) -> tuple[Deployment, Rollout]:
    from modelyard.workspace import resolve as resolve_workspace

    ws = resolve_workspace(workspace)
    with _exclusive(ws, spec.name, ttl_s=spec.timeout_s + 300):
        return _record_rollout(ws, spec)


@contextlib.contextmanager
def exclusive(ws: Workspace, name: str, *, ttl_s: float) -> Iterator[str]:
    """Hold the deployment's rollout lease (see :func:`_exclusive`) for a longer job, such as
    a progressive rollout; yields the holder's name, for :func:`renew_lease`."""
    with _exclusive(ws, name, ttl_s=ttl_s) as holder:
        yield holder


def renew_lease(ws: Workspace, name: str, holder: str, ttl_s: float) -> None:
    if not ws.store.monitoring.renew_lease(f"deploy:{name}", holder, ttl_s):
        raise DeployError(f"lost the rollout lease of {name!r}; another rollout may have begun")


@contextlib.contextmanager
def _exclusive(ws: Workspace, name: str, *, ttl_s: float) -> Iterator[str]:
    """One rollout of a deployment at a time, across processes and hosts sharing the store: two
    concurrent rollouts would each take the other's replicas for the old version."""
    import os
    import socket

    key = f"deploy:{name}"
    holder = f"{socket.gethostname()}:{os.getpid()}:{id(ws)}"
    if not ws.store.monitoring.acquire_lease(key, holder, ttl_s):
        raise DeployError(
            f"another rollout of {name!r} is in progress; wait for it to finish "
            "(its lease expires on its own if that process died)"
        )
    try:
        yield holder
    finally:
        ws.store.monitoring.release_lease(key, holder)


def recorded_auth_url(dep: Deployment | None) -> str | None:
    """The auth URL ``dep`` was last rolled out with (None: its prediction routes are open)."""
    value = (dep.config or {}).get("auth_url") if dep is not None else None
    return value if isinstance(value, str) and value else None


def _auth_url(requested: str | None, existing: Deployment | None) -> str | None:
    """``None`` keeps what the deployment has, so a rollout that does not mention tokens never
    opens a service that required them; ``""`` turns them off."""
    return recorded_auth_url(existing) if requested is None else requested or None


def record_rollout(ws: Workspace, spec: DeploySpec) -> Deployment:
    """:func:`deploy` for a caller that holds the deployment's lease already (see
    :func:`exclusive`)."""
    return _record_rollout(ws, spec)[0]


def _record_rollout(ws: Workspace, spec: DeploySpec) -> tuple[Deployment, Rollout]:
    target = spec.deploy_target
    repo = ws.store.deployments
    existing = repo.find(spec.name)
    if existing is not None and existing.target != spec.target:
        raise DeployError(
            f"deployment {spec.name!r} runs on {existing.target}, not {spec.target}; "
            "stop it first or choose another name"
        )
    port = spec.port if target.publishes_port else None
    if (
        existing is not None
        and existing.port not in (None, port)
        and target.is_running(ws, existing)
    ):
        raise DeployError(
            f"deployment {spec.name!r} listens on port {existing.port}; a rollout keeps the "
            "port (stop it first to move it)"
        )
    request = _request(ws, spec, existing)
    target.plan(request)  # renders what it would apply: a bad setting fails before any record
    version = request.version
    settings = (spec.options or target.options_type()).settings()
    if existing is None:
        if port is not None:
            _precheck_port(port)
        repo.create(
            spec.name,
            spec.target,
            port=port,
            replicas=spec.replicas,
            config={**settings, "auth_url": request.auth_url},
        )
    rev = repo.add_revision(
        spec.name,
        model_name=version.name,
        model_version=version.version,
        image_ref=request.image,
        image_digest=target.image_for(version)[1],
        replicas=spec.replicas,
    )
    repo.add_event(spec.name, "rollout", f"revision {rev.revision}: {version.ref}")
    try:
        done = target.rollout(request)
    except RolloutFailed as exc:
        repo.finish_revision(spec.name, rev.revision, ok=False, detail=exc.logs or str(exc))
        repo.add_event(spec.name, "failed", str(exc))
        raise
    except BaseException as exc:
        repo.finish_revision(spec.name, rev.revision, ok=False, detail=str(exc))
        repo.add_event(spec.name, "failed", str(exc))
        raise
    # Merged, not replaced: settings recorded by others (log_dir, registry) outlive a rollout.
    previous = existing.config if existing is not None and existing.config else {}
    repo.update(
        spec.name,
        port=port,
        config={**previous, **settings, **done.config, "auth_url": request.auth_url},
    )
    finished = repo.finish_revision(spec.name, rev.revision, ok=True)
    repo.add_event(spec.name, "ready", f"revision {rev.revision} serving {version.ref}")
    ws.store.lineage.add("model_version", version.ref, "deployment", spec.name, "deployed_as")
    return finished, done


def _precheck_port(port: int) -> None:
    from modelyard.deploy.probe import require_free_port

    require_free_port(port)


def rollback(
    name: str,
    *,
    workspace: Workspace | None = None,
    timeout_s: float | None = None,
    api: object | None = None,
) -> Deployment:
    """Roll ``name`` back to the version it served before the current one, on whatever target
    it runs: the earlier version is rolled out again through :func:`redeploy`, so the rollback
    is a revision of its own, checked for readiness like any rollout. ``api`` is the client
    the target reaches its platform through, as in :func:`redeploy` (e.g. the
    :class:`~modelyard.deploy.kubernetes.KubeApi` of a kubernetes deployment, ``FakeKubeApi``
    in tests; default: the official client)."""
    from modelyard.workspace import resolve as resolve_workspace

    ws = resolve_workspace(workspace)
    dep = ws.store.deployments.get(name)
    current = dep.current
    if current is None:
        raise DeployError(f"deployment {name!r} has never served a version; nothing to roll back")
    earlier = [
        r
        for r in dep.revisions
        if r.revision < current.revision
        and r.status in ("superseded", "active")
        and r.model_ref != current.model_ref
    ]
    if not earlier:
        raise DeployError(f"deployment {name!r} has no earlier version than {current.model_ref}")
    target = earlier[-1]
    ws.store.deployments.add_event(
        name, "rollback", f"from {current.model_ref} back to {target.model_ref}"
    )
    return redeploy(name, target.model_ref, workspace=ws, timeout_s=timeout_s, api=api)


def redeploy(
    name: str,
    ref: str,
    *,
    workspace: Workspace | None = None,
    timeout_s: float | None = None,
    api: object | None = None,
) -> Deployment:
    """Roll model ``ref`` out as the existing deployment ``name``, the way it is deployed now:
    same target, port, replicas, auth URL and target options (on Kubernetes the namespace and
    autoscaling), read back from its record.

    The one place that rolls a version out on an existing deployment, so a rollback and the
    monitor's retrain cannot drift apart from each other or from ``deploy``. ``timeout_s``
    defaults to the target's own (90 s locally and on Docker, 300 s on Kubernetes); ``api`` is
    the client the target reaches its platform through (a ``KubeApi``, a ``DockerEngine``;
    default: the target's own).
    """
    from modelyard.workspace import resolve as resolve_workspace

    ws = resolve_workspace(workspace)
    return deploy(spec_like(ws.store.deployments.get(name), ref, timeout_s, api), workspace=ws)


def spec_like(
    dep: Deployment,
    ref: str,
    timeout_s: float | None = None,
    api: object | None = None,
    strategy: str | None = None,
) -> DeploySpec:
    """A spec rolling ``ref`` out the way ``dep`` is deployed now (see :func:`redeploy`)."""
    from modelyard import image_contract as contract
    from modelyard.deploy.target import REPLACE

    target = target_of(dep)
    return DeploySpec(
        ref,
        dep.name,
        target=dep.target,
        port=dep.port or contract.PORT,
        replicas=dep.replicas,
        timeout_s=timeout_s or target.default_timeout_s,
        auth_url=recorded_auth_url(dep) or "",  # explicit: this rollout keeps tokens on or off
        options=target.recorded_options(dep, client=api),
        strategy=strategy or REPLACE,
    )


# ---- the candidate of a progressive rollout ---------------------------------------------
# modelyard.monitor.progressive drives these under the deployment's lease (exclusive): start
# the candidate beside the serving version, share the traffic step by step, then roll the
# candidate out (record_rollout, a revision like any other) or stop it.


def start_candidate(ws: Workspace, spec: DeploySpec) -> Deployment:
    """Start ``spec.ref`` beside what ``spec.name`` serves, taking no traffic yet; recorded as
    the deployment's ``candidate``. Raises (nothing left running) when it cannot start."""
    repo = ws.store.deployments
    dep = repo.find(spec.name)
    if dep is None or dep.current is None:
        raise DeployError(
            f"deployment {spec.name!r} serves nothing yet: deploy a version first, then roll "
            "the next one out with a shadow or canary"
        )
    if dep.target != spec.target:
        raise DeployError(f"deployment {spec.name!r} runs on {dep.target}, not {spec.target}")
    target = spec.deploy_target
    request = _request(ws, spec, dep)
    if request.version.ref == dep.current.model_ref:
        raise DeployError(f"{spec.name!r} serves {request.version.ref} already")
    beside = f"{request.version.ref} starts beside {dep.current.model_ref} ({spec.strategy})"
    repo.add_event(spec.name, "candidate", beside)
    try:
        done = target.start_candidate(request)
    except BaseException as exc:
        target.stop_candidate(ws, dep)
        repo.add_event(spec.name, "failed", f"candidate {request.version.ref}: {exc}")
        raise
    candidate = {**done.config, "ref": request.version.ref, "image": request.image,
                 "strategy": spec.strategy}  # fmt: skip
    return repo.update(spec.name, config={"candidate": candidate, "split": None})


def set_split(ws: Workspace, name: str, split: TrafficSplit | None) -> Deployment:
    """Share ``name``'s traffic with its candidate as ``split`` says (None: none)."""
    repo = ws.store.deployments
    dep = repo.get(name)
    target_of(dep).set_split(ws, dep, split)
    if split is not None:
        share = "copied to" if split.mode == "shadow" else "answered by"
        sticky = f", sticky by {split.sticky}" if split.sticky else ""
        repo.add_event(name, split.mode, f"{split.percent:g} % of requests {share} the "
                       f"candidate{sticky}")  # fmt: skip
    return repo.update(name, config={"split": split.to_dict() if split else None})


def stop_candidate(ws: Workspace, name: str, why: str) -> Deployment:
    """Stop ``name``'s candidate (nothing more reaches it first); ``why`` is recorded."""
    repo = ws.store.deployments
    dep = repo.get(name)
    target_of(dep).stop_candidate(ws, dep)
    repo.add_event(name, "candidate", why)
    return repo.update(name, config={"candidate": None, "split": None})


def stop(name: str, *, workspace: Workspace | None = None) -> Deployment:
    """Stop every replica (and the proxy) of ``name``; the record and history stay."""
    from modelyard.store.deploy_entities import STOPPED
    from modelyard.workspace import resolve as resolve_workspace

    ws = resolve_workspace(workspace)
    dep = ws.store.deployments.get(name)
    target_of(dep).stop(ws, dep)
    ws.store.deployments.add_event(name, "stopped", "stopped by request")
    return ws.store.deployments.update(name, status=STOPPED)


def status(name: str, *, workspace: Workspace | None = None) -> DeploymentStatus:
    """Version, replicas' health, and traffic read from their ``/metrics``."""
    from datetime import UTC, datetime

    from modelyard.deploy.traffic import replica_health, scrape
    from modelyard.workspace import resolve as resolve_workspace

    ws = resolve_workspace(workspace)
    dep = ws.store.deployments.get(name)
    urls = replica_urls(ws, dep)
    model = dep.current.model_name if dep.current else name
    health = tuple(replica_health(u, model) for u in urls)
    uptime = None
    if dep.current is not None:
        uptime = (datetime.now(UTC) - dep.current.created_at).total_seconds()
    ready = target_of(dep).ready_replicas(ws, dep, health)
    return DeploymentStatus(dep, health, scrape(urls), uptime, ready)


def replica_urls(ws: Workspace, dep: Deployment) -> list[str]:
    """Base URLs of ``dep``'s running replicas that this host can reach (none once stopped)."""
    from modelyard.store.deploy_entities import STOPPED

    if dep.status == STOPPED:
        return []
    return target_of(dep).replica_urls(ws, dep)


def logs(name: str, *, lines: int = 50, workspace: Workspace | None = None) -> str:
    """The last ``lines`` of the service's output (each replica's, for docker)."""
    from modelyard.workspace import resolve as resolve_workspace

    ws = resolve_workspace(workspace)
    dep = ws.store.deployments.get(name)
    return target_of(dep).logs(ws, dep, lines)


def events(
    name: str, *, limit: int = 50, workspace: Workspace | None = None
) -> list[DeploymentEvent]:
    """The latest ``limit`` events of ``name``, oldest first."""
    from modelyard.workspace import resolve as resolve_workspace

    return resolve_workspace(workspace).store.deployments.events(name, limit)


def list_deployments(*, workspace: Workspace | None = None) -> list[Deployment]:
    from modelyard.workspace import resolve as resolve_workspace

    return resolve_workspace(workspace).store.deployments.all()


def get_deployment(name: str, *, workspace: Workspace | None = None) -> Deployment:
    from modelyard.workspace import resolve as resolve_workspace

    return resolve_workspace(workspace).store.deployments.get(name)


@dataclass(frozen=True)
class KubernetesPlan:
    """What ``deploy --target kubernetes`` rendered, and (unless a dry run) how it went."""

    manifests: list[dict[str, Any]]
    result: KubeRolloutResult | None
    deployment: Deployment | None


def deploy_kubernetes(
    ref: str,
    name: str,
    *,
    namespace: str,
    replicas: int = 2,
    min_replicas: int | None = None,
    max_replicas: int | None = None,
    cpu_target: int = 70,
    timeout_s: float = 300,
    auth_url: str | None = None,
    dry_run: bool = False,
    api: KubeApi | None = None,
    workspace: Workspace | None = None,
) -> KubernetesPlan:
    """:func:`deploy` (or, with ``dry_run``, :func:`plan`) on the ``kubernetes`` target, with
    its manifests and the watched rollout's result: a shorthand for ``DeploySpec(ref, name,
    target="kubernetes", options=KubernetesOptions(...))``. ``auth_url`` is as in
    :class:`DeploySpec`: the pods require that team server's predict tokens, ``None`` keeps what
    the deployment has, ``""`` turns tokens off."""
    from modelyard.deploy.kubernetes.apply import KubeRolloutResult
    from modelyard.deploy.kubernetes.target import KubernetesOptions, KubernetesTarget

    options = KubernetesOptions(namespace, min_replicas, max_replicas, cpu_target, api=api)
    spec = DeploySpec(
        ref,
        name,
        target=KubernetesTarget.name,
        replicas=replicas,
        timeout_s=timeout_s,
        auth_url=auth_url,
        options=options,
    )
    manifests = plan(spec, workspace=workspace) or []
    if dry_run:
        return KubernetesPlan(manifests, None, None)
    done, rollout = _deploy(spec, workspace)
    result = rollout.report if isinstance(rollout.report, KubeRolloutResult) else None
    return KubernetesPlan(manifests, result, done)
