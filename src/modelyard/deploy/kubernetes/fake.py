"""FakeKubeApi: an in-memory cluster that speaks :class:`~.apply.KubeApi`, for tests.

No cluster can run in a test suite, so this plays the parts modelyard relies on: it stores
applied objects (refusing bodies a real server-side apply would refuse), and every read of a
Deployment advances a small Deployment controller one step — ReplicaSets per pod template
with revision numbers, a surge pod during a rolling update, pods whose state depends on the
image (``behaviour``), Warning events, and the ProgressDeadlineExceeded condition. It is a
model of the contract, not of the scheduler: enough to test apply / watch / rollback and the
CLI around them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import uuid
from collections.abc import Mapping
from typing import Any, Literal

from modelyard.errors import DeployError

Behaviour = Literal["ready", "crashloop", "imagepull", "hang", "deadline"]
REVISION = "deployment.kubernetes.io/revision"
_REFUSED_META = ("managedFields", "resourceVersion", "uid", "creationTimestamp", "generation")


class FakeKubeApi:
    """``behaviour`` maps an image reference to what its pods do (default ``ready``);
    pods of a ``ready`` image become available after ``steps_to_ready`` Deployment reads.
    ``fail_apply`` maps a kind to an error message its apply raises. ``calls`` records every
    call as ``(verb, kind, name)``."""

    def __init__(
        self,
        *,
        behaviour: Mapping[str, Behaviour] | None = None,
        steps_to_ready: int = 2,
        fail_apply: Mapping[str, str] | None = None,
    ) -> None:
        self.behaviour: dict[str, Behaviour] = dict(behaviour or {})
        self.steps_to_ready = steps_to_ready
        self.fail_apply = dict(fail_apply or {})
        self.objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self.replicasets: dict[tuple[str, str], dict[str, Any]] = {}
        self.pods: dict[tuple[str, str], dict[str, Any]] = {}
        self.events: list[dict[str, Any]] = []
        self.calls: list[tuple[str, str, str]] = []
        self.applied: list[dict[str, Any]] = []
        self._ticks: dict[tuple[str, str], int] = {}

    # -- KubeApi ---------------------------------------------------------------------------

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        self.calls.append(("get", kind, name))
        obj = self.objects.get((kind, namespace, name))
        if obj is None:
            return None
        if kind == "Deployment":
            self._reconcile(obj)
        return copy.deepcopy(obj)

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        body = copy.deepcopy(dict(manifest))
        kind, meta = body.get("kind"), body.get("metadata") or {}
        self.calls.append(("apply", str(kind), str(meta.get("name"))))
        if not body.get("apiVersion") or not kind or not meta.get("name"):
            raise DeployError("HTTP 400: apply needs apiVersion, kind and metadata.name")
        refused = [key for key in _REFUSED_META if key in meta]
        if refused or "status" in body:
            raise DeployError(f"HTTP 400: apply body carries server fields: {refused or 'status'}")
        if kind in self.fail_apply:
            raise DeployError(self.fail_apply[kind])
        self.applied.append(copy.deepcopy(body))
        key = (str(kind), str(meta.get("namespace")), str(meta["name"]))
        live = self.objects.get(key)
        if live is None:
            live = {
                "apiVersion": body["apiVersion"],
                "kind": kind,
                "metadata": {
                    "name": meta["name"],
                    "namespace": meta.get("namespace"),
                    "uid": str(uuid.uuid4()),
                    "generation": 1,
                    "resourceVersion": "1",
                    "managedFields": [{"manager": "modelyard", "operation": "Apply"}],
                },
                "spec": body.get("spec", {}),
                "status": {},
            }
            self.objects[key] = live
        elif live.get("spec") != body.get("spec"):
            live["spec"] = body.get("spec", {})
            live["metadata"]["generation"] += 1
        live["metadata"]["labels"] = dict(meta.get("labels") or {})
        kept = {
            k: v for k, v in (live["metadata"].get("annotations") or {}).items() if k == REVISION
        }
        live["metadata"]["annotations"] = {**kept, **(meta.get("annotations") or {})}
        live["metadata"]["resourceVersion"] = str(int(live["metadata"]["resourceVersion"]) + 1)
        return copy.deepcopy(live)

    def delete(self, kind: str, name: str, namespace: str) -> None:
        self.calls.append(("delete", kind, name))
        obj = self.objects.pop((kind, namespace, name), None)
        if obj is not None and kind == "Deployment":
            uid = obj["metadata"]["uid"]
            for key, rs in list(self.replicasets.items()):
                if rs["metadata"]["ownerReferences"][0]["uid"] == uid:
                    del self.replicasets[key]
                    for pod_key in [k for k in self.pods if k[1].startswith(key[1] + "-")]:
                        del self.pods[pod_key]

    def list_replicasets(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(rs)
            for (ns, _), rs in self.replicasets.items()
            if ns == namespace and _matches(rs["metadata"]["labels"], selector)
        ]

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(pod)
            for (ns, _), pod in self.pods.items()
            if ns == namespace and _matches(pod["metadata"]["labels"], selector)
        ]

    def list_events(self, namespace: str, involved_name: str) -> list[dict[str, Any]]:
        return [
            copy.deepcopy(e)
            for e in self.events
            if e["metadata"]["namespace"] == namespace
            and e["involvedObject"]["name"] == involved_name
        ]

    # -- the simulated controller ----------------------------------------------------------

    def image_of(self, kind: str, name: str, namespace: str) -> str | None:
        obj = self.objects.get((kind, namespace, name))
        if obj is None:
            return None
        return str(obj["spec"]["template"]["spec"]["containers"][0]["image"])

    def _reconcile(self, dep: dict[str, Any]) -> None:
        meta, spec = dep["metadata"], dep["spec"]
        ns, name = meta["namespace"], meta["name"]
        template = spec["template"]
        digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
        rs_name = f"{name}-{digest}"
        owned = {
            key: rs
            for key, rs in self.replicasets.items()
            if rs["metadata"]["ownerReferences"][0]["uid"] == meta["uid"]
        }
        top = max(
            (int(rs["metadata"]["annotations"][REVISION]) for rs in owned.values()), default=0
        )
        rs = self.replicasets.get((ns, rs_name))
        if rs is None:
            rs = self._new_replicaset(dep, rs_name, digest, top + 1)
            self.replicasets[(ns, rs_name)] = rs
        elif int(rs["metadata"]["annotations"][REVISION]) != top:
            rs["metadata"]["annotations"][REVISION] = str(top + 1)
            self._ticks[(ns, rs_name)] = 0
        meta.setdefault("annotations", {})[REVISION] = rs["metadata"]["annotations"][REVISION]
        ticks = self._ticks[(ns, rs_name)] = self._ticks.get((ns, rs_name), 0) + 1

        desired = int(spec.get("replicas", 1))
        image = str(template["spec"]["containers"][0]["image"])
        behaviour = self.behaviour.get(image, "ready")
        already = int(rs["status"].get("availableReplicas", 0)) >= desired  # a reused RS
        ready = behaviour == "ready" and (ticks >= self.steps_to_ready or already)
        old = [r for key, r in owned.items() if key != (ns, rs_name)]
        old_available = sum(int(r["status"].get("availableReplicas", 0)) for r in old)
        if ready:
            for r in old:
                self._scale(r, 0, ready=False)
            self._scale(rs, desired, ready=True)
            status = {"replicas": desired, "updatedReplicas": desired}
            available = desired
        else:
            surge = 1 if old_available else desired
            self._scale(rs, surge, ready=False, behaviour=behaviour, ticks=ticks)
            status = {"replicas": old_available + surge, "updatedReplicas": surge}
            available = old_available
        conditions = [{"type": "Available", "status": "True" if available else "False"}]
        if behaviour == "deadline" and ticks > self.steps_to_ready:
            conditions.append(
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": f'ReplicaSet "{rs_name}" has timed out progressing.',
                }
            )
        else:
            conditions.append(
                {"type": "Progressing", "status": "True", "reason": "ReplicaSetUpdated"}
            )
        dep["status"] = {
            "observedGeneration": meta["generation"],
            **status,
            "readyReplicas": available,
            "availableReplicas": available,
            "conditions": conditions,
        }

    def _new_replicaset(
        self, dep: Mapping[str, Any], rs_name: str, digest: str, revision: int
    ) -> dict[str, Any]:
        meta = dep["metadata"]
        template = copy.deepcopy(dep["spec"]["template"])
        template["metadata"]["labels"]["pod-template-hash"] = digest
        selector = dict(dep["spec"]["selector"]["matchLabels"], **{"pod-template-hash": digest})
        return {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": rs_name,
                "namespace": meta["namespace"],
                "labels": dict(template["metadata"]["labels"]),
                "annotations": {
                    REVISION: str(revision),
                    **{k: v for k, v in (meta.get("annotations") or {}).items() if k != REVISION},
                },
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "Deployment",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": {"selector": {"matchLabels": selector}, "template": template},
            "status": {"replicas": 0, "availableReplicas": 0},
        }

    def _scale(
        self,
        rs: dict[str, Any],
        count: int,
        *,
        ready: bool,
        behaviour: Behaviour = "ready",
        ticks: int = 0,
    ) -> None:
        ns, rs_name = rs["metadata"]["namespace"], rs["metadata"]["name"]
        for key in [k for k in self.pods if k[0] == ns and k[1].startswith(rs_name + "-")]:
            del self.pods[key]
        rs["status"] = {"replicas": count, "availableReplicas": count if ready else 0}
        image = rs["spec"]["template"]["spec"]["containers"][0]["image"]
        for i in range(count):
            pod_name = f"{rs_name}-{i}"
            self.pods[(ns, pod_name)] = {
                "metadata": {
                    "name": pod_name,
                    "namespace": ns,
                    "labels": dict(rs["spec"]["template"]["metadata"]["labels"]),
                },
                "status": _pod_status(image, ready, behaviour, ticks),
            }
            if behaviour == "imagepull" and not ready:
                self._event(ns, pod_name, "Failed", f'Failed to pull image "{image}": not found')

    def _event(self, namespace: str, involved: str, reason: str, message: str) -> None:
        event = {
            "metadata": {"name": f"{involved}.{reason}", "namespace": namespace},
            "involvedObject": {"name": involved, "namespace": namespace},
            "type": "Warning",
            "reason": reason,
            "message": message,
        }
        if event not in self.events:
            self.events.append(event)


def _pod_status(image: str, ready: bool, behaviour: Behaviour, ticks: int) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "model", "image": image, "ready": ready, "restartCount": 0}
    if ready or behaviour in ("hang", "deadline", "ready"):
        container["state"] = {"running": {"startedAt": "2024-01-01T00:00:00Z"}}
    elif behaviour == "crashloop":
        container["restartCount"] = ticks
        container["state"] = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": "back-off 10s restarting failed container=model",
            }
        }
        container["lastState"] = {
            "terminated": {"exitCode": 1, "reason": "Error", "message": "model file is corrupt"}
        }
    else:  # imagepull
        container["state"] = {
            "waiting": {
                "reason": "ImagePullBackOff",
                "message": f'Back-off pulling image "{image}"',
            }
        }
    phase = "Running" if "running" in container["state"] else "Pending"
    return {
        "phase": phase,
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [container],
    }


def _matches(labels: Mapping[str, str], selector: str) -> bool:
    for term in filter(None, selector.split(",")):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True
