"""The :class:`~modelyard.deploy.kubernetes.apply.KubeApi` protocol over the official client.

Thin on purpose: every call is one typed-API call of the ``kubernetes`` package, with
``_preload_content=False`` so objects come back as the JSON the API server sent (plain dicts,
camelCase keys, timestamps as strings) instead of generated model classes whose shape has
changed between client generations. Writes are server-side apply: a PATCH with content type
``application/apply-patch+yaml``, ``fieldManager=modelyard`` and ``force=true`` (modelyard owns
these objects; a hand edit of the same field is taken back on the next deploy).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from modelyard.errors import ConfigError, DeployError

FIELD_MANAGER = "modelyard"
APPLY_PATCH = "application/apply-patch+yaml"
REQUEST_TIMEOUT_S = 30.0


class _Ops(NamedTuple):
    read: Callable[..., Any]
    patch: Callable[..., Any]
    delete: Callable[..., Any]


class OfficialKubeApi:
    """A cluster reached through the official ``kubernetes`` client.

    Build it with :meth:`from_config` (kubeconfig or in-cluster service account), or hand it a
    ``kubernetes.client.ApiClient`` you configured yourself.
    """

    def __init__(self, api_client: Any) -> None:
        from kubernetes import client

        self.api_client = api_client
        self._core = client.CoreV1Api(api_client)
        self._apps = client.AppsV1Api(api_client)
        self._autoscaling = client.AutoscalingV2Api(api_client)
        self._policy = client.PolicyV1Api(api_client)

    @classmethod
    def from_config(
        cls,
        *,
        kubeconfig: str | None = None,
        context: str | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> OfficialKubeApi:
        """Inside a pod (``KUBERNETES_SERVICE_HOST`` set, no kubeconfig given) use the pod's
        service account; otherwise ``kubeconfig`` / ``$KUBECONFIG`` / ``~/.kube/config`` and
        its current (or the given) context. Nothing is loaded into the client's global
        default configuration."""
        try:
            from kubernetes import client, config
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise ConfigError(
                "deploying to Kubernetes needs the official client: pip install "
                "'modelyard[kubernetes]'"
            ) from exc
        env = os.environ if environ is None else environ
        configuration = client.Configuration()
        try:
            if kubeconfig is None and env.get("KUBERNETES_SERVICE_HOST") and context is None:
                config.load_incluster_config(  # type: ignore[no-untyped-call]
                    client_configuration=configuration
                )
            else:
                config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=kubeconfig or env.get("KUBECONFIG") or None,
                    context=context,
                    client_configuration=configuration,
                    persist_config=False,
                )
        except config.ConfigException as exc:
            raise ConfigError(f"no usable Kubernetes configuration: {exc}") from exc
        except OSError as exc:
            raise ConfigError(f"cannot read the Kubernetes configuration: {exc}") from exc
        return cls(client.ApiClient(configuration))

    # -- KubeApi ---------------------------------------------------------------------------

    def get(self, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        ops = self._ops(kind)
        try:
            found: dict[str, Any] = self._call(
                f"read {kind} {namespace}/{name}", ops.read, name, namespace
            )
            return found
        except _Missing:
            return None

    def apply(self, manifest: Mapping[str, Any]) -> dict[str, Any]:
        kind = str(manifest["kind"])
        meta = manifest["metadata"]
        applied: dict[str, Any] = self._call(
            f"apply {kind} {meta['namespace']}/{meta['name']}",
            self._ops(kind).patch,
            meta["name"],
            meta["namespace"],
            body=dict(manifest),
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY_PATCH,
        )
        return applied

    def delete(self, kind: str, name: str, namespace: str) -> None:
        from kubernetes import client

        try:
            self._call(
                f"delete {kind} {namespace}/{name}",
                self._ops(kind).delete,
                name,
                namespace,
                body=client.V1DeleteOptions(propagation_policy="Background"),
            )
        except _Missing:
            return

    def list_replicasets(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return self._items(
            "list ReplicaSets", self._apps.list_namespaced_replica_set, namespace, selector
        )

    def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return self._items("list Pods", self._core.list_namespaced_pod, namespace, selector)

    def list_events(self, namespace: str, involved_name: str) -> list[dict[str, Any]]:
        out = self._call(
            "list Events",
            self._core.list_namespaced_event,
            namespace,
            field_selector=f"involvedObject.name={involved_name}",
        )
        return list(out.get("items") or [])

    # -- plumbing --------------------------------------------------------------------------

    def _ops(self, kind: str) -> _Ops:
        if kind == "Deployment":
            a = self._apps
            return _Ops(
                a.read_namespaced_deployment,
                a.patch_namespaced_deployment,
                a.delete_namespaced_deployment,
            )
        if kind == "Service":
            c = self._core
            return _Ops(
                c.read_namespaced_service, c.patch_namespaced_service, c.delete_namespaced_service
            )
        if kind == "HorizontalPodAutoscaler":
            h = self._autoscaling
            return _Ops(
                h.read_namespaced_horizontal_pod_autoscaler,
                h.patch_namespaced_horizontal_pod_autoscaler,
                h.delete_namespaced_horizontal_pod_autoscaler,
            )
        if kind == "PodDisruptionBudget":
            p = self._policy
            return _Ops(
                p.read_namespaced_pod_disruption_budget,
                p.patch_namespaced_pod_disruption_budget,
                p.delete_namespaced_pod_disruption_budget,
            )
        raise DeployError(f"modelyard does not manage Kubernetes {kind!r} objects")

    def _items(
        self, what: str, method: Callable[..., Any], namespace: str, selector: str
    ) -> list[dict[str, Any]]:
        out = self._call(what, method, namespace, label_selector=selector)
        return list(out.get("items") or [])

    def _call(self, what: str, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        from kubernetes.client.exceptions import ApiException

        HTTPError = _transport_error()

        try:
            response = method(
                *args, _preload_content=False, _request_timeout=REQUEST_TIMEOUT_S, **kwargs
            )
        except ApiException as exc:
            if exc.status == 404 and not what.startswith("apply"):
                raise _Missing from None
            raise DeployError(f"{what}: {_api_message(exc)}") from None
        except HTTPError as exc:
            host = getattr(self.api_client.configuration, "host", "the cluster")
            raise DeployError(f"{what}: cannot reach the Kubernetes API at {host}: {exc}") from None
        data = response.data
        return json.loads(data) if data else {}


def _transport_error() -> type[Exception]:
    """urllib3's base error: what the client raises when the API server cannot be reached."""
    from urllib3.exceptions import HTTPError

    return HTTPError


class _Missing(Exception):
    """A 404 on read or delete, which callers treat as "absent"."""


def _api_message(exc: Any) -> str:
    """The API server's own message from a ``Status`` body, with the HTTP status."""
    detail = ""
    try:
        body = json.loads(exc.body or b"{}")
        detail = str(body.get("message") or "")
    except (ValueError, TypeError, AttributeError):
        detail = ""
    return f"HTTP {exc.status} {exc.reason or ''}".rstrip() + (f": {detail}" if detail else "")
