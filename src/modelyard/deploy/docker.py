"""The ``docker`` target: replicas of the model image behind an HAProxy container.

Each deployment has a user network ``modelyard-<name>``, replicas named
``<name>-<version>-<token>`` and a proxy ``<name>-proxy`` publishing the service port on
127.0.0.1. A rollout starts the new replicas, waits until each answers ready, rewrites the
proxy's configuration and reloads it gracefully, checks the port answers with the new version,
then stops the old replicas (each drains its in-flight requests on SIGTERM). A new version that
exits, restarts or never becomes ready is removed and the proxy never points at it.
"""

from __future__ import annotations

import json
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from modelyard import image_contract as contract
from modelyard.deploy.probe import get_json, require_free_port, serves_version, wait_until
from modelyard.deploy.proxy import (
    CONFIG_PATH,
    DEFAULT_PROXY_IMAGE,
    LISTEN_PORT,
    PROXY_PACKAGES,
    proxy_command,
    render_haproxy_config,
)
from modelyard.deploy.target import (
    CANARY,
    REPLACE,
    SHADOW,
    ReplicaNetwork,
    Rollout,
    RolloutRequest,
    TargetDefaults,
    TargetOptions,
    TrafficSplit,
    options_of,
)
from modelyard.errors import DeployError, EngineUnavailable, RolloutFailed
from modelyard.image_contract import AUTH_URL_ENV

if TYPE_CHECKING:
    from modelyard.images import DockerEngine
    from modelyard.store.deploy_entities import Deployment
    from modelyard.store.models_entities import ModelVersion
    from modelyard.workspace import Workspace

LABEL = "io.modelyard.deployment"
ROLE = "io.modelyard.role"
CANDIDATE = "candidate"
#: Where replicas read the split file (a read-only mount of the deployment's split folder).
SPLIT_MOUNT = "/etc/modelyard/split"
SPLIT_ENV = "MODELYARD_SERVE_SPLIT_FILE"
SERVE_PORT = contract.PORT
STOP_GRACE_S = 30
HOST_GATEWAY_NAME = "host.docker.internal"


def _engine(engine: DockerEngine | None = None) -> DockerEngine:
    from modelyard.images import DockerEngine

    return engine or DockerEngine.from_env()


def network_name(name: str) -> str:
    return f"modelyard-{name}"


def proxy_name(name: str) -> str:
    return f"{name}-proxy"


def replica_containers(
    name: str, engine: DockerEngine | None = None, role: str = "replica"
) -> list[str]:
    """Replica containers of ``name`` (running or not), oldest first; ``role="candidate"``:
    those of its progressive rollout's candidate."""
    eng = _engine(engine)
    proc = eng.run(
        [
            "ps",
            "-a",
            "--filter",
            f"label={LABEL}={name}",
            "--filter",
            f"label={ROLE}={role}",
            "--format",
            "{{.CreatedAt}}\t{{.Names}}",
        ],  # fmt: skip
    )
    rows = [line.split("\t") for line in proc.stdout.decode().splitlines() if "\t" in line]
    return [n for _, n in sorted(rows)]


def _inspect(eng: DockerEngine, container: str) -> dict[str, Any] | None:
    proc = eng.run(["container", "inspect", container], check=False)
    if proc.returncode != 0:
        return None
    data = json.loads(proc.stdout)
    return data[0] if data else None


def _host_url(data: dict[str, Any]) -> str | None:
    ports = (data.get("NetworkSettings") or {}).get("Ports") or {}
    bound = ports.get(f"{SERVE_PORT}/tcp") or []
    for entry in bound:
        if entry.get("HostPort"):
            return f"http://127.0.0.1:{entry['HostPort']}"
    return None


def replica_urls(name: str, engine: DockerEngine | None = None, role: str = "replica") -> list[str]:
    """Host URLs of the running replicas (published on random 127.0.0.1 ports)."""
    eng = _engine(engine)
    try:
        eng.ping()
    except EngineUnavailable:
        return []
    urls = []
    for container in replica_containers(name, eng, role):
        data = _inspect(eng, container)
        if data and (data.get("State") or {}).get("Running"):
            url = _host_url(data)
            if url:
                urls.append(url)
    return urls


def ensure_proxy_image(image: str = DEFAULT_PROXY_IMAGE, engine: DockerEngine | None = None) -> str:
    """The HAProxy image, made from Debian packages the first time (reused after)."""
    from modelyard.images import build_base_image

    build_base_image(image, packages=PROXY_PACKAGES, engine=_engine(engine))
    return image


def _wait_ready(
    eng: DockerEngine, containers: list[str], version: ModelVersion, timeout: float
) -> tuple[str, str] | None:
    """None once every container answers ready; else (container, why) for the first failure."""
    deadline = time.monotonic() + timeout
    pending = list(containers)
    while pending and time.monotonic() < deadline:
        for container in list(pending):
            state = _replica_ready(eng, container, version)
            if state == "ok":
                pending.remove(container)
            elif state is not None:
                return container, state
        if pending:
            time.sleep(0.2)
    return (pending[0], f"not ready after {timeout:.0f} s") if pending else None


def _start_replica(
    eng: DockerEngine,
    name: str,
    version: ModelVersion,
    image: str,
    log_dir: Path | None,
    auth_url: str | None = None,
    split_dir: Path | None = None,
    role: str = "replica",
) -> str:
    tag = "-cand" if role == CANDIDATE else ""
    container = f"{name}{tag}-{version.version}-{secrets.token_hex(3)}"
    args = replica_run_args(name, container, version, image, log_dir, auth_url, split_dir, role)
    eng.run(args, timeout=120)
    return container


def replica_run_args(
    name: str,
    container: str,
    version: ModelVersion,
    image: str,
    log_dir: Path | None = None,
    auth_url: str | None = None,
    split_dir: Path | None = None,
    role: str = "replica",
) -> list[str]:
    """The ``docker run`` arguments of one replica. ``split_dir`` is mounted (read-only) where
    the serving version reads the split file of a progressive rollout; a ``candidate`` replica
    logs its predictions as the ``canary`` variant (``shadow`` for mirrored ones).
    ``auth_url`` (checked by
    :func:`~modelyard.deploy.spec.check_auth_url`: never loopback, which in a container is the
    container) is passed as the server's environment; ``host.docker.internal`` is mapped to the
    host, as Docker Desktop does and Docker Engine on Linux does only when asked."""
    # The prediction and feedback logs go to a host folder, where monitoring reads them.
    extra: list[str] = []
    if log_dir is not None:
        extra += ["-v", f"{log_dir}:{contract.PREDICTION_LOG_DIR}"]
    if split_dir is not None:
        extra += [
            "-v",
            f"{split_dir}:{SPLIT_MOUNT}:ro",
            "-e",
            f"{SPLIT_ENV}={SPLIT_MOUNT}/split.json",
        ]
    if role == CANDIDATE:  # a quarter of the default CPU weight: production comes first
        extra += ["-e", "MODELYARD_SERVE_VARIANT=canary", "--cpu-shares", "256"]
    if auth_url:
        from urllib.parse import urlsplit

        extra += ["-e", f"{AUTH_URL_ENV}={auth_url}"]
        if (urlsplit(auth_url).hostname or "").lower() == HOST_GATEWAY_NAME:
            extra += ["--add-host", f"{HOST_GATEWAY_NAME}:host-gateway"]
    return [
        "run",
        "-d",
        *extra,
        "--name",
        container,
        "--network",
        network_name(name),
        "--label",
        f"{LABEL}={name}",
        "--label",
        f"{ROLE}={role}",
        "--label",
        f"io.modelyard.model={version.ref}",
        "--restart",
        "on-failure:5",
        "--stop-timeout",
        str(STOP_GRACE_S),
        "-p",
        f"127.0.0.1::{SERVE_PORT}",
        image,
    ]


def _replica_ready(eng: DockerEngine, container: str, version: ModelVersion) -> str | None:
    """None while starting; "ok" when ready; a reason when it failed (exited, restarted)."""
    data = _inspect(eng, container)
    if data is None:
        return "the container disappeared"
    state = data.get("State") or {}
    if not state.get("Running") or state.get("Restarting"):
        return f"the container exited with code {state.get('ExitCode')}"
    if int(data.get("RestartCount") or 0) > 0:
        return f"the container restarted {data['RestartCount']} time(s) (crash loop)"
    url = _host_url(data)
    if url and serves_version(url, version.name, version.version):
        return "ok"
    return None


def _logs(eng: DockerEngine, container: str, lines: int = 20) -> str:
    proc = eng.run(["logs", "--tail", str(lines), container], check=False)
    return (proc.stdout + proc.stderr).decode(errors="replace").strip()


def _remove(eng: DockerEngine, containers: list[str], *, grace: int = STOP_GRACE_S) -> None:
    if containers:
        eng.run(["stop", "-t", str(grace), *containers], check=False, timeout=grace + 60)
        eng.run(["rm", "-f", *containers], check=False)


def _put_config(eng: DockerEngine, container: str, text: str) -> None:
    with tempfile.TemporaryDirectory(prefix="modelyard-proxy-") as tmp:
        path = Path(tmp) / "haproxy.cfg"
        path.write_text(text)
        eng.run(["cp", str(path), f"{container}:{CONFIG_PATH}"])


def rollout(
    name: str,
    version: ModelVersion,
    image: str,
    *,
    port: int,
    replicas: int = 1,
    timeout: float = 90.0,
    proxy_image: str = DEFAULT_PROXY_IMAGE,
    engine: DockerEngine | None = None,
    log_dir: Path | None = None,
    auth_url: str | None = None,
    split_dir: Path | None = None,
) -> dict[str, Any]:
    """Serve ``image`` as ``name`` on 127.0.0.1:``port`` with ``replicas`` containers; every
    replica writes its prediction log into ``log_dir`` on the host (when given), reads a
    progressive rollout's split file from ``split_dir`` (when given) and requires predict
    tokens of the team server at ``auth_url`` (when given)."""
    eng = _engine(engine)
    eng.ping()
    ensure_proxy_image(proxy_image, eng)
    net = network_name(name)
    if eng.run(["network", "inspect", net], check=False).returncode != 0:
        eng.run(["network", "create", "--label", f"{LABEL}={name}", net])
    old = replica_containers(name, eng)
    proxy = proxy_name(name)
    proxy_exists = _inspect(eng, proxy) is not None
    if not proxy_exists:
        require_free_port(port)
    new: list[str] = []
    try:
        # Appended one by one, so a failure while starting the second leaves none behind.
        for _ in range(replicas):
            new.append(_start_replica(eng, name, version, image, log_dir, auth_url, split_dir))
        failure = _wait_ready(eng, new, version, timeout)
    except BaseException:  # Ctrl-C or an engine error while starting or waiting
        _remove(eng, new, grace=2)
        raise
    if failure is not None:
        container, reason = failure
        tail = _logs(eng, container)
        _remove(eng, new, grace=2)
        raise RolloutFailed(
            f"{version.ref} failed to start on docker ({container}: {reason}); "
            f"the previous version keeps serving. Last log lines:\n{tail}",
            tail,
        )
    try:
        config = render_haproxy_config(new, backend_port=SERVE_PORT)
        if proxy_exists:
            _put_config(eng, proxy, config)
            eng.run(["kill", "-s", "USR2", proxy])
        else:
            eng.run(
                ["create", "--name", proxy, "--network", net, "--label", f"{LABEL}={name}",
                 "--label", f"{ROLE}=proxy", "--restart", "unless-stopped",
                 "-p", f"127.0.0.1:{port}:{LISTEN_PORT}", proxy_image, *proxy_command()],
            )  # fmt: skip
            _put_config(eng, proxy, config)
            eng.run(["start", proxy])
        url = f"http://127.0.0.1:{port}"
        checks = max(4, 2 * replicas + 2)
        if not wait_until(
            lambda: all(serves_version(url, version.name, version.version) for _ in range(checks)),
            timeout=timeout,
        ):
            raise RolloutFailed(
                f"the proxy on {url} did not switch to {version.ref}: {_logs(eng, proxy, 10)}",
                _logs(eng, proxy, 20),
            )
    except BaseException:
        if old:  # point the proxy back at what served before
            try:
                _put_config(eng, proxy, render_haproxy_config(old, backend_port=SERVE_PORT))
                eng.run(["kill", "-s", "USR2", proxy], check=False)
            finally:
                _remove(eng, new, grace=2)
        else:
            _remove(eng, [*new, proxy], grace=2)
        raise
    _remove(eng, old)  # drained: the proxy no longer sends them anything
    recorded: dict[str, Any] = {"network": net, "proxy": proxy, "replicas": new, "image": image}
    if log_dir is not None:
        recorded["log_dir"] = str(log_dir)
    return recorded


def start_candidate(
    name: str,
    version: ModelVersion,
    image: str,
    *,
    replicas: int,
    timeout: float,
    engine: DockerEngine | None,
    log_dir: Path,
    auth_url: str | None,
) -> list[str]:
    """Start ``replicas`` candidate containers of ``image`` on the deployment's network, with
    no traffic (the proxy does not name them yet); raises :class:`RolloutFailed` (none left)
    when one never becomes ready."""
    eng = _engine(engine)
    eng.ping()
    primaries = replica_containers(name, eng)
    if not primaries:
        raise DeployError(f"deployment {name!r} has no replica running")
    env = ((_inspect(eng, primaries[-1]) or {}).get("Config") or {}).get("Env") or []
    if not any(str(e).startswith(f"{SPLIT_ENV}=") for e in env):
        raise DeployError(
            f"deployment {name!r} was started by an older modelyard whose replicas cannot "
            f"mirror traffic; roll its version out once more (modelyard deploy) first"
        )
    _remove(eng, replica_containers(name, eng, CANDIDATE), grace=2)
    new: list[str] = []
    try:
        for _ in range(replicas):
            new.append(_start_replica(eng, name, version, image, log_dir, auth_url,
                                      role=CANDIDATE))  # fmt: skip
        failure = _wait_ready(eng, new, version, timeout)
    except BaseException:
        _remove(eng, new, grace=2)
        raise
    if failure is not None:
        container, reason = failure
        tail = _logs(eng, container)
        _remove(eng, new, grace=2)
        why = f"({container}: {reason}); nothing changed. Last log lines:\n{tail}"
        raise RolloutFailed(f"candidate {version.ref} failed to start on docker {why}", tail)
    return new


def set_split(
    name: str,
    split_dir: Path,
    split: TrafficSplit | None,
    engine: DockerEngine | None = None,
) -> None:
    """Shadow: the serving replicas' split file names the candidates (they mirror); canary:
    the proxy's weights send the candidates their share; None: neither."""
    import json

    eng = _engine(engine)
    primaries = replica_containers(name, eng)
    candidates = replica_containers(name, eng, CANDIDATE)
    if split is not None and not candidates:
        raise DeployError(f"deployment {name!r} has no candidate running")
    path = split_dir / "split.json"
    if split is not None and split.mode == SHADOW:
        urls = [f"http://{c}:{SERVE_PORT}" for c in candidates]
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps({**split.to_dict(), "candidates": urls}))
        tmp.chmod(0o644)
        tmp.replace(path)
    else:
        path.unlink(missing_ok=True)
    canary = split is not None and split.mode == CANARY
    config = render_haproxy_config(
        primaries,
        backend_port=SERVE_PORT,
        candidates=candidates if canary else (),
        candidate_percent=split.percent if split is not None and canary else 0.0,
        sticky=split.sticky if split is not None and canary else None,
    )
    _put_config(eng, proxy_name(name), config)
    eng.run(["kill", "-s", "USR2", proxy_name(name)])


def candidate_fault(name: str, engine: DockerEngine | None = None) -> str | None:
    eng = _engine(engine)
    containers = replica_containers(name, eng, CANDIDATE)
    if not containers:
        return "no candidate container is left"
    for container in containers:
        data = _inspect(eng, container) or {}
        state = data.get("State") or {}
        if not state.get("Running") or state.get("Restarting"):
            return f"candidate {container} exited with code {state.get('ExitCode')}"
        if int(data.get("RestartCount") or 0) > 0:
            return f"candidate {container} crashed and restarted {data['RestartCount']} time(s)"
    return None


def stop_candidate(name: str, split_dir: Path, engine: DockerEngine | None = None) -> None:
    eng = _engine(engine)
    eng.ping()
    candidates = replica_containers(name, eng, CANDIDATE)
    if _inspect(eng, proxy_name(name)) is not None and replica_containers(name, eng):
        set_split(name, split_dir, None, eng)
    (split_dir / "split.json").unlink(missing_ok=True)
    _remove(eng, candidates, grace=5)


def stop(name: str, engine: DockerEngine | None = None) -> None:
    eng = _engine(engine)
    eng.ping()
    _remove(eng, replica_containers(name, eng, CANDIDATE), grace=5)
    _remove(eng, replica_containers(name, eng))
    if _inspect(eng, proxy_name(name)) is not None:
        _remove(eng, [proxy_name(name)], grace=5)
    eng.run(["network", "rm", network_name(name)], check=False)


def logs(name: str, lines: int = 50, engine: DockerEngine | None = None) -> str:
    eng = _engine(engine)
    parts = []
    for container in replica_containers(name, eng):
        parts.append(f"==> {container} <==\n{_logs(eng, container, lines)}")
    return "\n".join(parts)


def ready(url: str) -> bool:
    return get_json(f"{url}{contract.READY_PATH}") is not None


@dataclass(frozen=True)
class DockerOptions(TargetOptions):
    """``proxy_image``: the HAProxy image in front of the replicas (made from Debian packages
    the first time); ``engine``: the Docker engine to use (default: from the environment)."""

    CLIENTS: ClassVar[tuple[str, ...]] = ("engine",)

    proxy_image: str = DEFAULT_PROXY_IMAGE
    engine: DockerEngine | None = field(default=None, compare=False)


class DockerTarget(TargetDefaults):
    """Replicas of the model image behind an HAProxy container on this host's Docker engine."""

    name: str = "docker"
    options_type: type[TargetOptions] = DockerOptions
    uses_images: bool = True
    publishes_port: bool = True
    default_replicas: int = 1
    default_timeout_s: float = 90.0
    strategies: tuple[str, ...] = (REPLACE, SHADOW, CANARY)
    replica_network: ReplicaNetwork | None = ReplicaNetwork(
        "a replica container's",
        "containers",
        f", or http://{HOST_GATEWAY_NAME}:PORT when it runs on this host (listening beyond "
        "loopback: modelyard server --host 0.0.0.0)",
    )

    def image_for(self, version: ModelVersion) -> tuple[str | None, str | None]:
        if version.image_id is None:
            raise DeployError(
                f"{version.ref} has no image; build it first: modelyard build {version.ref}"
            )
        return version.image_ref or version.image_id, version.image_digest

    def rollout(self, request: RolloutRequest) -> Rollout:
        spec, ws = request.spec, request.workspace
        options = options_of(spec, DockerOptions)
        assert request.image is not None
        # The replicas' prediction logs land on the host, where monitoring reads them.
        from modelyard.deploy.local import service

        log_dir = service(ws, spec.name).predlog  # the same folder as a local deployment's
        log_dir.mkdir(parents=True, exist_ok=True)
        log_dir.chmod(0o1777)  # the image's non-root user writes here; sticky like /tmp
        split_dir = _split_dir(ws, spec.name)
        recorded_config = rollout(
            spec.name,
            request.version,
            request.image,
            port=spec.port,
            replicas=spec.replicas,
            timeout=spec.timeout_s,
            proxy_image=options.proxy_image,
            engine=options.engine,
            log_dir=log_dir,
            auth_url=request.auth_url,
            split_dir=split_dir,
        )
        return Rollout({**recorded_config, **options.settings()})

    def is_running(self, ws: Workspace, dep: Deployment) -> bool:
        return bool(replica_urls(dep.name))

    def replica_urls(self, ws: Workspace, dep: Deployment) -> list[str]:
        return replica_urls(dep.name)

    def stop(self, ws: Workspace, dep: Deployment) -> None:
        stop(dep.name)

    def logs(self, ws: Workspace, dep: Deployment, lines: int) -> str:
        return logs(dep.name, lines)

    # A progressive rollout's candidate: containers labelled role=candidate on the same
    # network. Shadow: the serving replicas mirror to them (their split file); canary: the
    # proxy's server weights.
    def start_candidate(self, request: RolloutRequest) -> Rollout:
        from modelyard.deploy.local import service

        spec, ws = request.spec, request.workspace
        options = options_of(spec, DockerOptions)
        assert request.image is not None
        containers = start_candidate(
            spec.name,
            request.version,
            request.image,
            replicas=spec.replicas,
            timeout=spec.timeout_s,
            engine=options.engine,
            log_dir=service(ws, spec.name).predlog,
            auth_url=request.auth_url,
        )
        return Rollout({"containers": containers, "replicas": spec.replicas})

    def set_split(self, ws: Workspace, dep: Deployment, split: TrafficSplit | None) -> None:
        set_split(dep.name, _split_dir(ws, dep.name), split)

    def candidate_urls(self, ws: Workspace, dep: Deployment) -> list[str]:
        return replica_urls(dep.name, role=CANDIDATE)

    def candidate_fault(self, ws: Workspace, dep: Deployment) -> str | None:
        return candidate_fault(dep.name)

    def stop_candidate(self, ws: Workspace, dep: Deployment) -> None:
        stop_candidate(dep.name, _split_dir(ws, dep.name))


def _split_dir(ws: Workspace, name: str) -> Path:
    """The host folder mounted read-only into the serving replicas, holding the split file."""
    from modelyard.deploy.local import service

    folder = service(ws, name).folder / "split"
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o755)
    return folder
