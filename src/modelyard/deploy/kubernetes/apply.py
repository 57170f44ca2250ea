"""Apply manifests with server-side apply, watch the rollout, and roll back when it fails.

Kubernetes only *reports* a rollout that does not progress (``ProgressDeadlineExceeded``); it
never undoes one. modelyard does: it reads every object before applying, and when the new
Deployment does not become ready in time (or its pods fail in a way that will not heal) it
re-applies what was there before — or, on a first deploy, deletes what it created, so a
failed first deploy leaves the namespace as it found it rather than a Deployment scaled to zero
that still looks "deployed". The reasons (container waiting reasons such as CrashLoopBackOff or
ImagePullBackOff, exit codes, Warning events, Deployment conditions) are collected *before*
anything is undone, because undoing deletes the pods that carry them.

All cluster access goes through the narrow :class:`KubeApi` protocol, in plain JSON-shaped
dictionaries; :class:`OfficialKubeApi` implements it over the official ``kubernetes`` client
and :class:`~modelyard.deploy.kubernetes.fake.FakeKubeApi` simulates a cluster for tests.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from modelyard.deploy.kubernetes.client import OfficialKubeApi
from modelyard.deploy.kubernetes.manifests import check_name, check_namespace
from modelyard.errors import DeployError, InvalidParameter, NotFound

KINDS = ("Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget")
REVISION = "deployment.kubernetes.io/revision"
# Waiting reasons that do not heal by waiting longer: fail the rollout at once.
_FATAL_WAITING = {
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "ErrImageNeverPull",
}
# A container that crashed this often is crash-looping, not slow to start.
CRASH_LOOP_RESTARTS = 3
_BENIGN_WAITING = {"ContainerCreating", "PodInitializing"}
_MAX_REASONS = 12

Outcome = Literal["ready", "rolled-back", "removed", "failed"]


class KubeApi(Protocol):
    """What modelyard needs from a cluster. Objects are JSON-shaped dicts (camelCase keys, as
    the API server sends them); ``kind`` is one of :data:`KINDS`."""

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        """The live object, or None when it does not exist."""
        ...

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply as field manager ``modelyard``, taking over conflicting fields."""
        ...

    def delete(self, kind: str, name: str, namespace: str) -> None:
        """Delete, with dependents garbage-collected; a missing object is not an error."""
        ...

    def list_replicasets(self, namespace: str, selector: str) -> list[dict[str, Any]]: ...

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]: ...

    def list_events(self, namespace: str, involved_name: str) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class KubeRolloutResult:
    """How a deploy or rollback ended.

    ``outcome``: ``ready`` (the new spec serves), ``rolled-back`` (it failed; the previous
    objects were re-applied and serve again), ``removed`` (a first deploy failed; what it
    created was deleted), ``failed`` (it failed and nothing could be restored — a failed
    explicit rollback, or a restore that did not become ready either). ``revision`` and
    ``image`` describe what serves afterwards; ``reasons`` say why it failed.
    """

    name: str
    namespace: str
    outcome: Outcome
    revision: int | None
    image: str | None
    ready_replicas: int
    desired_replicas: int
    elapsed_s: float
    reasons: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.outcome == "ready"


@dataclass(frozen=True)
class _Watch:
    ok: bool
    deployment: dict[str, Any] | None
    reasons: tuple[str, ...]


def deploy(
    manifests: Sequence[Mapping[str, Any]],
    *,
    namespace: str,
    timeout_s: float = 300,
    api: KubeApi | None = None,
    on_event: Callable[[str], None] | None = None,
    poll_interval_s: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> KubeRolloutResult:
    """Apply ``manifests`` (one Deployment plus its Service, HPA, PDB) into ``namespace`` and
    wait until the Deployment is rolled out; on failure undo and say why.

    Returns a result with ``ok`` False rather than raising when the rollout fails, so the
    caller can record the failed deployment with its reasons. Raises
    :class:`~modelyard.errors.DeployError` when the cluster refuses a request.
    """
    check_namespace(namespace)
    if timeout_s <= 0:
        raise InvalidParameter(f"timeout must be positive (got {timeout_s!r})")
    bodies = _prepare(manifests, namespace)
    deployment_body = next(b for b in bodies if b["kind"] == "Deployment")
    name = deployment_body["metadata"]["name"]
    api = api if api is not None else OfficialKubeApi.from_config()
    emit = on_event or _ignore
    started = clock()

    previous = {_key(b): api.get(b["kind"], b["metadata"]["name"], namespace) for b in bodies}
    live = previous[("Deployment", name)]
    if live is not None:
        _keep_live_scale(deployment_body, live, bodies)

    applied: list[dict[str, Any]] = []
    generation = 0
    try:
        for body in bodies:
            result = api.apply(body)
            applied.append(body)
            emit(f"applied {body['kind']} {namespace}/{body['metadata']['name']}")
            if body["kind"] == "Deployment":
                generation = int(result.get("metadata", {}).get("generation") or 0)
    except DeployError as exc:
        if applied:
            emit(f"apply failed ({exc}); restoring what was there before")
            _restore(api, applied, previous, namespace)
        raise

    watch = _watch(api, name, namespace, generation, timeout_s, poll_interval_s, clock, sleep, emit)
    if watch.ok:
        emit(f"Deployment {namespace}/{name} is ready")
        return _result(name, namespace, "ready", watch.deployment, started, clock, ())

    emit(f"rollout of {namespace}/{name} failed: {'; '.join(watch.reasons[:3])}")
    try:
        _restore(api, applied, previous, namespace)
    except DeployError as exc:
        reasons = (*watch.reasons, str(exc))
        return _result(name, namespace, "failed", watch.deployment, started, clock, reasons)
    if live is None:
        emit(f"removed {namespace}/{name}: a first deploy has nothing to roll back to")
        return _result(name, namespace, "removed", None, started, clock, watch.reasons)
    emit(f"rolled back {namespace}/{name} to the previous spec")
    restored = api.get("Deployment", name, namespace)
    restored_gen = int((restored or {}).get("metadata", {}).get("generation") or 0)
    again = _watch(
        api, name, namespace, restored_gen, timeout_s, poll_interval_s, clock, sleep, emit
    )
    if again.ok:
        return _result(
            name, namespace, "rolled-back", again.deployment, started, clock, watch.reasons
        )
    reasons = watch.reasons + ("the rolled-back spec did not become ready either",) + again.reasons
    return _result(name, namespace, "failed", again.deployment, started, clock, reasons)


def rollback(
    name: str,
    *,
    namespace: str,
    api: KubeApi | None = None,
    to_revision: int | None = None,
    timeout_s: float = 300,
    on_event: Callable[[str], None] | None = None,
    poll_interval_s: float = 2.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> KubeRolloutResult:
    """Go back to an earlier revision of Deployment ``name`` (the one before the current, or
    ``to_revision``), like ``kubectl rollout undo``, and wait for it to roll out.

    The pod template comes from that revision's ReplicaSet and is applied over the live
    Deployment, with the lineage labels and annotations of that revision, so the objects say
    which model version serves. Raises :class:`~modelyard.errors.NotFound` when there is no
    such Deployment or revision.
    """
    check_name(name, "deployment name")
    check_namespace(namespace)
    api = api if api is not None else OfficialKubeApi.from_config()
    emit = on_event or _ignore
    started = clock()
    live = api.get("Deployment", name, namespace)
    if live is None:
        raise NotFound(f"no Deployment {name!r} in namespace {namespace!r}")
    current = _revision(live)
    history = sorted(
        (
            (rev, rs)
            for rs in _owned_replicasets(api, live, namespace)
            if (rev := _revision(rs)) is not None
        ),
        key=lambda item: item[0],
    )
    if to_revision is not None:
        matches = [rs for rev, rs in history if rev == to_revision]
        if not matches:
            known = ", ".join(str(rev) for rev, _ in history) or "none"
            raise NotFound(f"{namespace}/{name} has no revision {to_revision} (known: {known})")
        target = matches[0]
    else:
        older = [rs for rev, rs in history if current is None or rev < current]
        if not older:
            raise NotFound(f"{namespace}/{name} has no earlier revision to roll back to")
        target = older[-1]
    body = _undo_body(live, target)
    emit(f"rolling {namespace}/{name} back to revision {_revision(target)}")
    result = api.apply(body)
    generation = int(result.get("metadata", {}).get("generation") or 0)
    watch = _watch(api, name, namespace, generation, timeout_s, poll_interval_s, clock, sleep, emit)
    outcome: Outcome = "ready" if watch.ok else "failed"
    return _result(name, namespace, outcome, watch.deployment, started, clock, watch.reasons)


# -- rollout status --------------------------------------------------------------------------


def rollout_status(deployment: Mapping[str, Any], generation: int) -> tuple[str, str]:
    """``("done" | "waiting" | "failed", message)`` for a Deployment, following the rules of
    ``kubectl rollout status``: the controller has seen this generation, every replica runs
    the new template, no old replica is left, and all of them are available."""
    spec = deployment.get("spec", {})
    status = deployment.get("status", {}) or {}
    observed = int(status.get("observedGeneration") or 0)
    if observed < generation:
        return "waiting", "waiting for the Deployment controller to see the new spec"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return "failed", f"Deployment: ProgressDeadlineExceeded: {cond.get('message', '')}"
    desired = int(spec.get("replicas", 1))
    updated = int(status.get("updatedReplicas") or 0)
    total = int(status.get("replicas") or 0)
    available = int(status.get("availableReplicas") or 0)
    if updated < desired:
        return "waiting", f"{updated} of {desired} replicas updated"
    if total > updated:
        return "waiting", f"{total - updated} old replica(s) pending termination"
    if available < updated:
        return "waiting", f"{available} of {updated} updated replicas available"
    return "done", f"{available} of {desired} replicas available"


def _watch(
    api: KubeApi,
    name: str,
    namespace: str,
    generation: int,
    timeout_s: float,
    poll_interval_s: float,
    clock: Callable[[], float],
    sleep: Callable[[float], None],
    emit: Callable[[str], None],
) -> _Watch:
    deadline = clock() + timeout_s
    last = ""
    while True:
        dep = api.get("Deployment", name, namespace)
        if dep is None:
            return _Watch(False, None, (f"Deployment {namespace}/{name} was deleted",))
        state, message = rollout_status(dep, generation)
        if message != last:
            emit(message)
            last = message
        if state == "done":
            return _Watch(True, dep, ())
        if state == "failed":
            return _Watch(False, dep, (message, *failure_reasons(api, dep, namespace)))
        if state == "waiting" and (fatal := _fatal_pod_reasons(api, dep, namespace)):
            return _Watch(False, dep, (*fatal, *failure_reasons(api, dep, namespace)))
        if clock() >= deadline:
            timed_out = f"not ready after {timeout_s:g}s ({message})"
            return _Watch(False, dep, (timed_out, *failure_reasons(api, dep, namespace)))
        sleep(poll_interval_s)


def failure_reasons(api: KubeApi, deployment: Mapping[str, Any], namespace: str) -> tuple[str, ...]:
    """Why the newest revision's pods are not ready: Deployment conditions, container waiting
    and termination reasons, and Warning events of the ReplicaSet and its pods."""
    reasons: list[str] = []
    for cond in (deployment.get("status") or {}).get("conditions") or []:
        failing = (cond.get("type") == "ReplicaFailure" and cond.get("status") == "True") or (
            cond.get("type") == "Progressing" and cond.get("status") == "False"
        )
        if failing:
            reasons.append(f"Deployment: {cond.get('reason')}: {cond.get('message', '')}")
    rs = _newest_replicaset(api, deployment, namespace)
    pods = _pods_of(api, rs, namespace) if rs is not None else []
    for pod in pods:
        reasons.extend(_pod_reasons(pod))
    involved = ([rs["metadata"]["name"]] if rs is not None else []) + [
        p["metadata"]["name"] for p in pods
    ]
    for obj_name in involved:
        for event in api.list_events(namespace, obj_name):
            if event.get("type") == "Warning":
                reasons.append(
                    f"{obj_name}: {event.get('reason')}: {(event.get('message') or '').strip()}"
                )
    return tuple(dict.fromkeys(reasons))[:_MAX_REASONS]


def _fatal_pod_reasons(
    api: KubeApi, deployment: Mapping[str, Any], namespace: str
) -> tuple[str, ...]:
    rs = _newest_replicaset(api, deployment, namespace)
    if rs is None:
        return ()
    fatal = []
    for pod in _pods_of(api, rs, namespace):
        for cs in (pod.get("status") or {}).get("containerStatuses") or []:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            crash_looping = (
                reason == "CrashLoopBackOff"
                and int(cs.get("restartCount") or 0) >= CRASH_LOOP_RESTARTS
            )
            if reason in _FATAL_WAITING or crash_looping:
                fatal.append(
                    f"pod {pod['metadata']['name']}: container {cs.get('name')}: {reason}"
                    f" (restarted {int(cs.get('restartCount') or 0)} times)"
                )
    return tuple(dict.fromkeys(fatal))


def _pod_reasons(pod: Mapping[str, Any]) -> list[str]:
    name = pod["metadata"]["name"]
    status = pod.get("status") or {}
    out = []
    for cond in status.get("conditions") or []:
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            out.append(f"pod {name}: {cond.get('reason')}: {cond.get('message', '')}")
    for cs in status.get("containerStatuses") or []:
        state = cs.get("state") or {}
        waiting = state.get("waiting") or {}
        if waiting.get("reason") and waiting["reason"] not in _BENIGN_WAITING:
            detail = f" ({waiting['message']})" if waiting.get("message") else ""
            out.append(f"pod {name}: container {cs.get('name')}: {waiting['reason']}{detail}")
        terminated = state.get("terminated") or (cs.get("lastState") or {}).get("terminated")
        if terminated:
            out.append(
                f"pod {name}: container {cs.get('name')} exited with code "
                f"{terminated.get('exitCode')} ({terminated.get('reason') or 'no reason'})"
                + (f": {terminated['message'].strip()}" if terminated.get("message") else "")
            )
        elif not cs.get("ready") and not waiting and (state.get("running") is not None):
            out.append(f"pod {name}: container {cs.get('name')} is running but not ready")
    return out


# -- replica sets ----------------------------------------------------------------------------


def _selector(deployment: Mapping[str, Any]) -> str:
    match = deployment.get("spec", {}).get("selector", {}).get("matchLabels") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(match.items()))


def _owned_replicasets(
    api: KubeApi, deployment: Mapping[str, Any], namespace: str
) -> list[dict[str, Any]]:
    uid = deployment.get("metadata", {}).get("uid")
    owned = []
    for rs in api.list_replicasets(namespace, _selector(deployment)):
        owners = rs.get("metadata", {}).get("ownerReferences") or []
        if uid is None or any(o.get("uid") == uid for o in owners):
            owned.append(rs)
    return owned


def _newest_replicaset(
    api: KubeApi, deployment: Mapping[str, Any], namespace: str
) -> dict[str, Any] | None:
    owned = _owned_replicasets(api, deployment, namespace)
    wanted = _revision(deployment)
    for rs in owned:
        if wanted is not None and _revision(rs) == wanted:
            return rs
    return max(owned, key=lambda rs: _revision(rs) or 0, default=None)


def _pods_of(api: KubeApi, rs: Mapping[str, Any], namespace: str) -> list[dict[str, Any]]:
    labels = rs.get("spec", {}).get("selector", {}).get("matchLabels") or {}
    selector = ",".join(f"{k}={v}" for k, v in sorted(labels.items()))
    return api.list_pods(namespace, selector)


def _revision(obj: Mapping[str, Any]) -> int | None:
    raw = (obj.get("metadata", {}).get("annotations") or {}).get(REVISION)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


# -- bodies ----------------------------------------------------------------------------------


def _prepare(manifests: Sequence[Mapping[str, Any]], namespace: str) -> list[dict[str, Any]]:
    bodies = [copy.deepcopy(dict(m)) for m in manifests]
    kinds = [b.get("kind") for b in bodies]
    if kinds.count("Deployment") != 1:
        raise InvalidParameter("deploy needs exactly one Deployment among the manifests")
    seen = set()
    for body in bodies:
        if body.get("kind") not in KINDS:
            raise InvalidParameter(
                f"cannot deploy a {body.get('kind')!r}: only {', '.join(KINDS)} are applied"
            )
        meta = body.setdefault("metadata", {})
        check_name(meta.get("name", ""), f"{body['kind']} name")
        if meta.setdefault("namespace", namespace) != namespace:
            raise InvalidParameter(
                f"{body['kind']} {meta['name']} is for namespace {meta['namespace']!r}, "
                f"not {namespace!r}"
            )
        if _key(body) in seen:
            raise InvalidParameter(f"{body['kind']} {meta['name']} appears twice")
        seen.add(_key(body))
    return bodies


def _keep_live_scale(
    deployment: dict[str, Any], live: Mapping[str, Any], bodies: Sequence[Mapping[str, Any]]
) -> None:
    """Keep the replica count the autoscaler chose (within the new bounds): applying the
    rendered starting scale over a Deployment scaled out under load would kill pods mid-load."""
    hpa = next((b for b in bodies if b["kind"] == "HorizontalPodAutoscaler"), None)
    current = live.get("spec", {}).get("replicas")
    if hpa is None or not isinstance(current, int):
        return
    low = int(hpa["spec"].get("minReplicas", 1))
    high = int(hpa["spec"]["maxReplicas"])
    deployment["spec"]["replicas"] = min(max(current, low), high)


_SERVER_ANNOTATIONS = {REVISION, "kubectl.kubernetes.io/last-applied-configuration"}


def reapplicable(obj: Mapping[str, Any], kind: str, api_version: str) -> dict[str, Any]:
    """A live object trimmed to what can be applied again: identity, labels, annotations and
    spec — no status, resourceVersion, uid or managedFields (apply refuses those)."""
    meta = obj.get("metadata", {})
    annotations = {
        k: v for k, v in (meta.get("annotations") or {}).items() if k not in _SERVER_ANNOTATIONS
    }
    trimmed: dict[str, Any] = {"name": meta["name"], "namespace": meta.get("namespace")}
    if meta.get("labels"):
        trimmed["labels"] = dict(meta["labels"])
    if annotations:
        trimmed["annotations"] = annotations
    return {
        "apiVersion": api_version,
        "kind": kind,
        "metadata": trimmed,
        "spec": copy.deepcopy(obj.get("spec", {})),
    }


def _undo_body(live: Mapping[str, Any], rs: Mapping[str, Any]) -> dict[str, Any]:
    body = reapplicable(live, "Deployment", "apps/v1")
    template = copy.deepcopy(rs.get("spec", {}).get("template", {}))
    template.setdefault("metadata", {}).setdefault("labels", {}).pop("pod-template-hash", None)
    body["spec"]["template"] = template
    # The Deployment's own labels and annotations say which model version it serves.
    tmpl_labels = template["metadata"].get("labels") or {}
    tmpl_annotations = template["metadata"].get("annotations") or {}
    labels = body["metadata"].setdefault("labels", {})
    annotations = body["metadata"].setdefault("annotations", {})
    for key, value in tmpl_labels.items():
        if key.startswith("io.modelyard/") or key == "app.kubernetes.io/version":
            labels[key] = value
    for key, value in tmpl_annotations.items():
        if key.startswith("io.modelyard/"):
            annotations[key] = value
    return body


def _restore(
    api: KubeApi,
    applied: Sequence[Mapping[str, Any]],
    previous: Mapping[tuple[str, str], dict[str, Any] | None],
    namespace: str,
) -> None:
    """Put back what each applied object was before: re-apply the old one, or delete it when
    there was none. Objects go in reverse apply order, the Deployment last-but-not-least."""
    errors = []
    for body in reversed(applied):
        before = previous.get(_key(body))
        try:
            if before is None:
                api.delete(body["kind"], body["metadata"]["name"], namespace)
            else:
                api.apply(reapplicable(before, body["kind"], body["apiVersion"]))
        except DeployError as exc:
            errors.append(f"{body['kind']} {body['metadata']['name']}: {exc}")
    if errors:
        raise DeployError("could not restore the previous objects: " + "; ".join(errors))


def _result(
    name: str,
    namespace: str,
    outcome: Outcome,
    deployment: Mapping[str, Any] | None,
    started: float,
    clock: Callable[[], float],
    reasons: tuple[str, ...],
) -> KubeRolloutResult:
    image = None
    ready = desired = 0
    revision = None
    if deployment is not None:
        containers = (
            deployment.get("spec", {}).get("template", {}).get("spec", {}).get("containers") or []
        )
        image = containers[0].get("image") if containers else None
        ready = int((deployment.get("status") or {}).get("availableReplicas") or 0)
        desired = int(deployment.get("spec", {}).get("replicas", 1))
        revision = _revision(deployment)
    return KubeRolloutResult(
        name=name,
        namespace=namespace,
        outcome=outcome,
        revision=revision,
        image=image,
        ready_replicas=ready,
        desired_replicas=desired,
        elapsed_s=round(clock() - started, 3),
        reasons=reasons,
    )


def _key(body: Mapping[str, Any]) -> tuple[str, str]:
    return str(body["kind"]), str(body["metadata"]["name"])


def _ignore(_message: str) -> None:
    return None
