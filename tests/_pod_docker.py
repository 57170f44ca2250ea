"""Run a Kubernetes Deployment's pod the way a kubelet would, with ``docker run``.

:func:`pod_run` reads the pod template of a rendered ``apps/v1`` Deployment and turns each
field into the Docker flag with the same effect — nothing is written by hand for a particular
manifest, so whatever the manifest asks of the image (user, read-only root, dropped
capabilities, writable mounts, environment, command and arguments) is asked of it here too. A
field the translator does not know fails loudly instead of being dropped: a new field in the
manifests needs a translation before this test passes again.

What a kubelet does differently, and why it does not matter for "does the pod start":
scheduling (requests, spread constraints), image pulls (the image is local or on a loopback
registry) and cluster networking (the container port is published on 127.0.0.1 instead).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelyard.deploy.kubernetes.manifests import parse_quantity

# Fields that change where or how a pod is placed, pulled or reached inside a cluster, not what
# the container may do: nothing in `docker run` corresponds to them.
_POD_PLACEMENT = {"topologySpreadConstraints", "imagePullSecrets"}
_CONTAINER_PLACEMENT = {"name", "imagePullPolicy"}
# The cluster's requests are for the scheduler; limits are enforced on the container.
_LIMIT_FLAGS = {"cpu": ("--cpus", "{:g}"), "memory": ("--memory", "{:.0f}")}


class Untranslatable(AssertionError):
    """The manifest uses a field this translator cannot express with ``docker run``."""


@dataclass(frozen=True)
class Probe:
    path: str
    port: int


@dataclass(frozen=True)
class PodRun:
    """``docker run`` arguments for one pod's single container, and what a kubelet would do
    around it: probe it, run its ``preStop`` hook, and give it ``grace_s`` to stop."""

    args: list[str]
    image: str
    ports: dict[str, int]
    probes: dict[str, Probe]
    pre_stop: list[str] | None
    grace_s: int
    volumes: dict[str, str] = field(default_factory=dict)  # volume name -> mount path


def pod_run(deployment: Mapping[str, Any], *, name: str, image: str | None = None) -> PodRun:
    """The ``docker run -d`` arguments of ``deployment``'s pod, as container ``name``.

    ``image`` replaces the manifest's image reference (e.g. a local tag for a registry digest);
    by default the manifest's own is run."""
    if deployment.get("kind") != "Deployment":
        raise Untranslatable(f"not a Deployment: {deployment.get('kind')!r}")
    pod = dict(deployment["spec"]["template"]["spec"])
    containers = pod.pop("containers")
    if len(containers) != 1 or pod.pop("initContainers", None):
        raise Untranslatable("one container per pod (no init containers or sidecars)")
    container = dict(containers[0])
    args = ["run", "-d", "--name", name]

    pod_security = dict(pod.pop("securityContext", {}))
    if pod.pop("automountServiceAccountToken", True) is not False:
        raise Untranslatable("a mounted service-account token (automountServiceAccountToken)")
    pod.pop("enableServiceLinks", None)  # True would only add environment about Services
    grace_s = int(pod.pop("terminationGracePeriodSeconds", 30))
    volumes = {v["name"]: v for v in pod.pop("volumes", [])}
    for key in _POD_PLACEMENT:
        pod.pop(key, None)
    if pod:
        raise Untranslatable(f"pod fields {sorted(pod)}")

    args += _security(pod_security, dict(container.pop("securityContext", {})))
    mounted = {}
    for mount in container.pop("volumeMounts", []):
        mounted[mount["name"]] = mount["mountPath"]
        args += _mount(volumes[mount["name"]], mount)
    ports = {}
    for port in container.pop("ports", []):
        if port.get("hostPort") or port.get("protocol", "TCP") != "TCP":
            raise Untranslatable(f"port {port}")
        ports[port.get("name") or str(port["containerPort"])] = int(port["containerPort"])
        args += ["-p", f"127.0.0.1::{int(port['containerPort'])}"]
    for env in container.pop("env", []):
        if "value" not in env:
            raise Untranslatable(f"env {env['name']} from {sorted(set(env) - {'name'})}")
        args += ["-e", f"{env['name']}={env['value']}"]
    for key, value in container.pop("resources", {}).get("limits", {}).items():
        if key not in _LIMIT_FLAGS:
            raise Untranslatable(f"resource limit {key}")
        flag, number = _LIMIT_FLAGS[key]
        args += [flag, number.format(parse_quantity(value, key))]
    if "workingDir" in container:
        args += ["-w", container.pop("workingDir")]
    probes = {}
    for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
        if kind in container:
            probes[kind] = _probe(container.pop(kind), ports)
    pre_stop = None
    lifecycle = container.pop("lifecycle", {})
    if "preStop" in lifecycle:
        pre_stop = list(lifecycle.pop("preStop")["exec"]["command"])
    if lifecycle:
        raise Untranslatable(f"lifecycle hooks {sorted(lifecycle)}")
    # Kubernetes: `command` replaces the image's ENTRYPOINT (and drops its CMD), `args` replaces
    # its CMD. Docker's --entrypoint takes one word and likewise resets CMD; the rest follow.
    command = container.pop("command", None)
    cmd_args = container.pop("args", None)
    after: list[str] = []
    if command:
        args += ["--entrypoint", command[0]]
        after += command[1:]
    if cmd_args is not None:
        after += cmd_args
    run_image = image or container.pop("image")
    container.pop("image", None)
    for key in _CONTAINER_PLACEMENT:
        container.pop(key, None)
    if container:
        raise Untranslatable(f"container fields {sorted(container)}")
    return PodRun(
        args=[*args, run_image, *after],
        image=run_image,
        ports=ports,
        probes=probes,
        pre_stop=pre_stop,
        grace_s=grace_s,
        volumes=mounted,
    )


def _security(pod: dict[str, Any], container: dict[str, Any]) -> list[str]:
    """Container settings override the pod's, as in Kubernetes."""
    merged = {**pod, **container}
    flags: list[str] = []
    user, group = merged.pop("runAsUser", None), merged.pop("runAsGroup", None)
    if merged.pop("runAsNonRoot", False):
        if user is None:
            raise Untranslatable("runAsNonRoot without runAsUser (the image's USER decides)")
        if int(user) == 0:
            raise AssertionError("runAsNonRoot with runAsUser 0: the kubelet refuses to start it")
    if user is not None:
        flags += ["--user", f"{int(user)}:{int(group)}" if group is not None else str(int(user))]
    fs_group = merged.pop("fsGroup", None)
    if fs_group is not None:
        flags += ["--group-add", str(int(fs_group))]
    if merged.pop("readOnlyRootFilesystem", False):
        flags.append("--read-only")
    if merged.pop("allowPrivilegeEscalation", True) is False:
        flags += ["--security-opt", "no-new-privileges"]
    if merged.pop("privileged", False):
        flags.append("--privileged")
    caps = merged.pop("capabilities", {})
    for cap in caps.get("drop", []):
        flags += ["--cap-drop", cap]
    for cap in caps.get("add", []):
        flags += ["--cap-add", cap]
    seccomp = merged.pop("seccompProfile", {"type": "RuntimeDefault"})["type"]
    if seccomp == "Unconfined":
        flags += ["--security-opt", "seccomp=unconfined"]
    elif seccomp != "RuntimeDefault":  # Docker's default profile is the runtime default
        raise Untranslatable(f"seccomp profile {seccomp}")
    if merged:
        raise Untranslatable(f"security context fields {sorted(merged)}")
    return flags


def _mount(volume: Mapping[str, Any], mount: Mapping[str, Any]) -> list[str]:
    """An emptyDir is a fresh, empty, world-writable (0777) folder per pod: a tmpfs of its size
    limit (``medium: Memory`` is one in Kubernetes too; on disk it only outlives nothing)."""
    if set(volume) != {"name", "emptyDir"}:
        raise Untranslatable(f"volume {volume['name']}: only emptyDir")
    if set(mount) - {"name", "mountPath", "readOnly"}:
        raise Untranslatable(f"volume mount {dict(mount)}")
    options = ["ro" if mount.get("readOnly") else "rw", "exec", "mode=0777"]
    limit = volume["emptyDir"].get("sizeLimit")
    if limit is not None:
        options.append(f"size={int(parse_quantity(limit, 'sizeLimit'))}")
    return ["--tmpfs", f"{mount['mountPath']}:{','.join(options)}"]


def _probe(probe: Mapping[str, Any], ports: Mapping[str, int]) -> Probe:
    if "httpGet" not in probe:
        raise Untranslatable(f"probe {dict(probe)}: only httpGet")
    get = probe["httpGet"]
    port = get["port"]
    return Probe(path=get["path"], port=ports[port] if isinstance(port, str) else int(port))


def published(inspect: Mapping[str, Any], port: int) -> str:
    """The 127.0.0.1 URL Docker published ``port`` on (``docker container inspect`` data)."""
    bound = inspect["NetworkSettings"]["Ports"][f"{port}/tcp"]
    return f"http://127.0.0.1:{bound[0]['HostPort']}"


def pod_of(manifests: Sequence[Mapping[str, Any]]) -> Mapping[str, Any]:
    deployments = [m for m in manifests if m.get("kind") == "Deployment"]
    assert len(deployments) == 1, [m.get("kind") for m in manifests]
    return deployments[0]
