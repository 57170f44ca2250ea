"""Deploy, roll back, stop and inspect named services; every rollout is a recorded revision.

The targets (``local``, ``docker``, and ``kubernetes`` through its manifests) only start,
switch and stop what serves; this module decides what to run, records it, and turns a failed
rollout into a failed revision with the replica's last log lines while the previous revision
keeps serving. :func:`redeploy` is the one place that picks a target's rollout for an existing
deployment (rollbacks and the monitor's retrains both go through it).

A deployment's ``auth_url`` (predict tokens required by every replica) is part of its record, so
every later rollout — a new version, a rollback, a retrain — keeps it. modelyard itself never
needs a token for a deployed server: readiness and rollout checks, ``deployments status`` and the
monitor read only the routes a server leaves open (health, model metadata, ``/metrics``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelyard import image_contract as contract
from modelyard.deploy.spec import DOCKER, KUBERNETES, LOCAL, DeploySpec
from modelyard.errors import DeployError, RolloutFailed
from modelyard.models.trust import check_code_trust

if TYPE_CHECKING:
    from modelyard.deploy.traffic import ReplicaHealth, TrafficStats
    from modelyard.store.deploy import Deployment, DeploymentEvent
    from modelyard.store.models_entities import ModelVersion
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
    """Roll ``spec.ref`` out as ``spec.name``: create the service, or switch it to the new
    version without dropping a request. On failure the revision is recorded as failed with the
    replica's logs, the old version keeps serving, and :class:`RolloutFailed` is raised."""
    from modelyard.models import resolve
    from modelyard.workspace import resolve as resolve_workspace

    ws = resolve_workspace(workspace)
    if spec.target == KUBERNETES:
        raise DeployError("use deploy_kubernetes() for the kubernetes target")
    version = resolve(spec.ref, ws)
    check_code_trust(version)  # again at deploy time: a revoked trust stops the next rollout
    with _exclusive(ws, spec.name, ttl_s=spec.timeout_s + 300):
        return _deploy(ws, spec, version)


@contextlib.contextmanager
def _exclusive(ws: Workspace, name: str, *, ttl_s: float) -> Iterator[None]:
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
        yield
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


def _deploy(ws: Workspace, spec: DeploySpec, version: ModelVersion) -> Deployment:
    repo = ws.store.deployments
    existing = repo.find(spec.name)
    if existing is not None and existing.target != spec.target:
        raise DeployError(
            f"deployment {spec.name!r} runs on {existing.target}, not {spec.target}; "
            "stop it first or choose another name"
        )
    if existing is not None and existing.port not in (None, spec.port) and _running(ws, existing):
        raise DeployError(
            f"deployment {spec.name!r} listens on port {existing.port}; a rollout keeps the "
            "port (stop it first to move it)"
        )
    image_ref, image_digest = _image_of(version, spec.target)
    auth_url = _auth_url(spec.auth_url, existing)
    if existing is None:
        _precheck_port(spec)
        repo.create(
            spec.name,
            spec.target,
            port=spec.port,
            replicas=spec.replicas,
            config={"auth_url": auth_url},
        )
    rev = repo.add_revision(
        spec.name,
        model_name=version.name,
        model_version=version.version,
        image_ref=image_ref,
        image_digest=image_digest,
        replicas=spec.replicas,
    )
    repo.add_event(spec.name, "rollout", f"revision {rev.revision}: {version.ref}")
    try:
        config = _rollout(ws, spec, version, image_ref, auth_url)
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
    repo.update(spec.name, port=spec.port, config={**previous, **config, "auth_url": auth_url})
    done = repo.finish_revision(spec.name, rev.revision, ok=True)
    repo.add_event(spec.name, "ready", f"revision {rev.revision} serving {version.ref}")
    ws.store.lineage.add("model_version", version.ref, "deployment", spec.name, "deployed_as")
    return done


def _precheck_port(spec: DeploySpec) -> None:
    from modelyard.deploy.probe import require_free_port

    require_free_port(spec.port)


def _image_of(version: ModelVersion, target: str) -> tuple[str | None, str | None]:
    if target == LOCAL:
        return None, None
    if version.image_id is None:
        raise DeployError(
            f"{version.ref} has no image; build it first: modelyard build {version.ref}"
        )
    return version.image_ref or version.image_id, version.image_digest


def _rollout(
    ws: Workspace,
    spec: DeploySpec,
    version: ModelVersion,
    image_ref: str | None,
    auth_url: str | None,
) -> dict[str, object]:
    if spec.target == LOCAL:
        from modelyard.deploy import local

        local.rollout(
            ws,
            spec.name,
            version,
            port=spec.port,
            replicas=spec.replicas,
            timeout=spec.timeout_s,
            auth_url=auth_url,
        )
        return {"state_dir": str(local.service(ws, spec.name).folder)}
    from modelyard.deploy import docker

    assert image_ref is not None
    log_dir = ws.state_dir / "deployments" / spec.name / "predlog"
    log_dir.mkdir(parents=True, exist_ok=True)
    log_dir.chmod(0o1777)  # the image's non-root user writes here; sticky like /tmp
    return docker.rollout(
        spec.name,
        version,
        image_ref,
        port=spec.port,
        replicas=spec.replicas,
        timeout=spec.timeout_s,
        log_dir=log_dir,
        auth_url=auth_url,
    )


def _running(ws: Workspace, dep: Deployment) -> bool:
    if dep.target == LOCAL:
        from modelyard.deploy import local

        return local.service(ws, dep.name).pid() is not None
    if dep.target == DOCKER:
        from modelyard.deploy import docker

        return bool(docker.replica_urls(dep.name))
    return True


def rollback(
    name: str,
    *,
    workspace: Workspace | None = None,
    timeout_s: float | None = None,
    api: object | None = None,
) -> Deployment:
    """Roll ``name`` back to the version it served before the current one, on whatever target
    it runs: the earlier version is rolled out again through :func:`redeploy`, so the rollback
    is a revision of its own, checked for readiness like any rollout. ``api`` is the
    :class:`~modelyard.deploy.kubernetes.KubeApi` a kubernetes deployment is reached through
    (``FakeKubeApi`` in tests; default: the official client)."""
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
    same target, port, replicas and auth URL, and on Kubernetes the same namespace and
    autoscaling.

    The one place that picks the rollout path for an existing deployment, so a rollback and the
    monitor's retrain cannot drift apart from each other or from ``deploy``. ``timeout_s``
    defaults to the target's own (90 s locally and on Docker, 300 s on Kubernetes); ``api`` is
    used by the kubernetes target only.
    """
    from modelyard.workspace import resolve as resolve_workspace

    ws = resolve_workspace(workspace)
    dep = ws.store.deployments.get(name)
    auth_url = recorded_auth_url(dep) or ""  # explicit: this rollout keeps tokens on or off
    if dep.target == KUBERNETES:
        config = dep.config or {}
        plan = deploy_kubernetes(
            ref,
            name,
            namespace=str(config.get("namespace") or "default"),
            replicas=dep.replicas,
            min_replicas=_int_or_none(config.get("min_replicas")),
            max_replicas=_int_or_none(config.get("max_replicas")),
            cpu_target=_int_or_none(config.get("cpu_target")) or 70,
            timeout_s=timeout_s or 300,
            auth_url=auth_url,
            api=api,
            workspace=ws,
        )
        assert plan.deployment is not None  # not a dry run
        return plan.deployment
    spec = DeploySpec(
        ref,
        name,
        target=dep.target,
        port=dep.port or contract.PORT,
        replicas=dep.replicas,
        timeout_s=timeout_s or 90.0,
        auth_url=auth_url,
    )
    return deploy(spec, workspace=ws)


def _int_or_none(value: object) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def stop(name: str, *, workspace: Workspace | None = None) -> Deployment:
    """Stop every replica (and the proxy) of ``name``; the record and history stay."""
    from modelyard.store.deploy import STOPPED
    from modelyard.workspace import resolve as resolve_workspace

    ws = resolve_workspace(workspace)
    dep = ws.store.deployments.get(name)
    if dep.target == LOCAL:
        from modelyard.deploy import local

        local.stop(ws, name)
    elif dep.target == DOCKER:
        from modelyard.deploy import docker

        docker.stop(name)
    else:
        raise DeployError(
            f"deployment {name!r} runs on {dep.target}; scale or delete it with kubectl"
        )
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
    ready = sum(1 for r in health if r.ready)
    if dep.target == LOCAL and ready:
        from modelyard.deploy import local

        svc = local.service(ws, name)
        master = svc.pid()
        ready = local.ready_workers(svc, master) if master is not None else 0
    return DeploymentStatus(dep, health, scrape(urls), uptime, ready)


def replica_urls(ws: Workspace, dep: Deployment) -> list[str]:
    if dep.status == "stopped":
        return []
    if dep.target == LOCAL:
        from modelyard.deploy import local

        return local.endpoints(dep.port) if _running(ws, dep) else []
    if dep.target == DOCKER:
        from modelyard.deploy import docker

        return docker.replica_urls(dep.name)
    return []


def logs(name: str, *, lines: int = 50, workspace: Workspace | None = None) -> str:
    """The last ``lines`` of the service's output (each replica's, for docker)."""
    from modelyard.workspace import resolve as resolve_workspace

    ws = resolve_workspace(workspace)
    dep = ws.store.deployments.get(name)
    if dep.target == LOCAL:
        from modelyard.deploy import local

        return local.logs(ws, name, lines)
    if dep.target == DOCKER:
        from modelyard.deploy import docker

        return docker.logs(name, lines)
    raise DeployError(f"logs of {dep.target} deployments: use kubectl logs")


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

    manifests: list[dict[str, object]]
    result: object | None  # KubeRolloutResult
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
    api: object | None = None,
    workspace: Workspace | None = None,
) -> KubernetesPlan:
    """Render the manifests for ``ref``'s pushed image and (unless ``dry_run``) apply them
    with the rollout watched; the outcome is recorded like any other target's. ``auth_url``
    is as in :class:`DeploySpec`: the pods require that team server's predict tokens, ``None``
    keeps what the deployment has, ``""`` turns tokens off."""
    from modelyard.deploy import kubernetes as kube
    from modelyard.deploy.spec import AUTH_URL_ENV, check_auth_url
    from modelyard.models import resolve
    from modelyard.packaging.dockerfile import lineage_labels
    from modelyard.workspace import resolve as resolve_workspace

    if auth_url:
        check_auth_url(auth_url, KUBERNETES)
    ws = resolve_workspace(workspace)
    found = ws.store.deployments.find(name)
    auth_url = _auth_url(auth_url, found if found and found.target == KUBERNETES else None)
    version = resolve(ref, ws)
    check_code_trust(version)
    if version.image_ref is None or version.image_digest is None:
        raise DeployError(
            f"{version.ref} has no pushed image; a cluster pulls from a registry: "
            f"modelyard build {version.ref} && modelyard push {version.ref} --registry HOST/PATH"
        )
    spec = kube.KubeSpec(
        name=name,
        namespace=namespace,
        image=version.image_ref,
        model=version.name,
        version=str(version.version),
        replicas=replicas,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        cpu_target=cpu_target,
        labels=lineage_labels(ws, version),
        env={AUTH_URL_ENV: auth_url} if auth_url else {},
    )
    manifests = kube.render_manifests(spec)
    if dry_run:
        return KubernetesPlan(manifests, None, None)
    # What redeploy() needs to roll another version out the same way (a rollback, a retrain).
    settings: dict[str, object] = {
        "namespace": namespace,
        "min_replicas": min_replicas,
        "max_replicas": max_replicas,
        "cpu_target": cpu_target,
        "auth_url": auth_url,
    }
    repo = ws.store.deployments
    with _exclusive(ws, name, ttl_s=timeout_s + 300):
        existing = repo.find(name)
        if existing is None:
            repo.create(name, KUBERNETES, port=None, replicas=replicas, config=settings)
        elif existing.target != KUBERNETES:
            raise DeployError(f"deployment {name!r} runs on {existing.target}, not kubernetes")
        rev = repo.add_revision(
            name,
            model_name=version.name,
            model_version=version.version,
            image_ref=version.image_ref,
            image_digest=version.image_digest,
            replicas=replicas,
        )
        repo.add_event(name, "rollout", f"revision {rev.revision}: {version.ref}")
        try:
            result = kube.deploy(
                manifests,
                namespace=namespace,
                timeout_s=timeout_s,
                api=api,  # type: ignore[arg-type]
                on_event=lambda msg: repo.add_event(name, "kubernetes", msg),
            )
        except BaseException as exc:  # the cluster refused a request: no rollout happened
            repo.finish_revision(name, rev.revision, ok=False, detail=str(exc))
            repo.add_event(name, "failed", str(exc))
            raise
        if not result.ok:
            reasons = "; ".join(result.reasons) or result.outcome
            repo.finish_revision(name, rev.revision, ok=False, detail=reasons)
            message = (
                f"{version.ref} did not roll out in {namespace}/{name} ({result.outcome}): "
                f"{reasons}"
            )
            repo.add_event(name, "failed", message)
            raise RolloutFailed(message, reasons)
        repo.update(name, config=settings)
        done = repo.finish_revision(name, rev.revision, ok=True)
        repo.add_event(name, "ready", f"revision {rev.revision} serving {version.ref}")
    ws.store.lineage.add("model_version", version.ref, "deployment", name, "deployed_as")
    return KubernetesPlan(manifests, result, done)
