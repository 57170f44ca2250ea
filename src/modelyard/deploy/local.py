"""The ``local`` target: gunicorn with uvicorn workers on the host, no Docker needed.

Why gunicorn: its master process owns the listening socket, and ``SIGHUP`` re-reads the config
file, starts new workers and only then gracefully stops the old ones, all on that same socket —
a rollout without a refused connection and without writing a proxy. The served folder is named
in the config (and by the ``current`` symlink beside it, for people looking), so a rollout is:
check the new model loads (a probe server on a spare port), rewrite the config, ``SIGHUP``,
wait until the port answers with the new version.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.deploy.probe import wait_until
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
from modelyard.errors import DeployError, RolloutFailed
from modelyard.image_contract import AUTH_URL_ENV

if TYPE_CHECKING:
    from modelyard.deploy.traffic import ReplicaHealth
    from modelyard.store.deploy_entities import Deployment
    from modelyard.store.models_entities import ModelVersion
    from modelyard.workspace import Workspace

DEPLOY_DIR = "deployments"
CANDIDATE_DIR = "candidate"
SPLIT_FILE = "split.json"
SPLIT_ENV = "MODELYARD_SERVE_SPLIT_FILE"
CANDIDATE_NICE = 10
LOG_FILE = "server.log"
PREDLOG_DIR = "predlog"
READY_DIR = "ready"


@dataclass(frozen=True)
class LocalService:
    """The files of one local deployment under ``.modelyard/deployments/<name>/``."""

    folder: Path

    @property
    def config(self) -> Path:
        return self.folder / "gunicorn.conf.py"

    @property
    def pidfile(self) -> Path:
        return self.folder / "gunicorn.pid"

    @property
    def log(self) -> Path:
        return self.folder / LOG_FILE

    @property
    def current(self) -> Path:
        return self.folder / "current"

    @property
    def predlog(self) -> Path:
        """The workers' prediction log (recorded as the deployment's ``log_dir``)."""
        return self.folder / PREDLOG_DIR

    @property
    def upgrade_pidfile(self) -> Path:
        """Where a master started by ``SIGUSR2`` writes its pid until the old one exits (then it
        is promoted and moves it to :attr:`pidfile`)."""
        return self.folder / "gunicorn.pid.2"

    @property
    def split_file(self) -> Path:
        """Where a progressive rollout names the candidate the workers mirror to or split
        with (:mod:`modelyard.serving.variants`)."""
        return self.folder / SPLIT_FILE

    @property
    def candidate(self) -> LocalService:
        """The candidate server of a progressive rollout, beside this one."""
        return LocalService(self.folder / CANDIDATE_DIR)

    def pid(self) -> int | None:
        """The serving master: the promoted one, else one mid-upgrade."""
        return _read_pid(self.pidfile) or _read_pid(self.upgrade_pidfile)


def _read_pid(path: Path) -> int | None:
    try:
        pid = int(path.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except OSError:
        return None
    return pid


def service(ws: Workspace, name: str) -> LocalService:
    from modelyard.refs import validate_name

    return LocalService(ws.state_dir / DEPLOY_DIR / validate_name(name, "deployment name"))


def _write_config(
    svc: LocalService,
    version: ModelVersion,
    model_dir: Path,
    port: int,
    replicas: int,
    auth_url: str | None = None,
    *,
    candidate_of: LocalService | None = None,
) -> None:
    """``candidate_of``: this is the candidate of a progressive rollout beside that service
    (it logs into that service's prediction log as the ``canary`` variant); else the serving
    version, which reads its split file (:mod:`modelyard.serving.variants`)."""
    variant: dict[str, str] = {SPLIT_ENV: str(svc.split_file)}
    if candidate_of is not None:
        variant = {"MODELYARD_SERVE_VARIANT": "canary"}
    env = {
        "MODELYARD_SERVE_MODEL_DIR": str(model_dir),
        "MODELYARD_SERVE_NAME": version.name,
        "MODELYARD_SERVE_VERSION": str(version.version),
        "MODELYARD_SERVE_ALLOW_PICKLE": str(version.code_trusted),
        # Named, not left to the working folder: the monitor reads the folder recorded here.
        "MODELYARD_SERVE_LOG_DIR": str((candidate_of or svc).predlog),
        **variant,
        "MODELYARD_DEPLOY_READY_DIR": str(svc.folder / READY_DIR),
        # Bound to loopback: answer only loopback Host names (DNS rebinding, httpguard).
        "MODELYARD_SERVE_BIND_HOST": "127.0.0.1",
        # Always set, empty meaning off: whether the service wants tokens is the deployment's
        # record, not whatever the shell that started gunicorn happened to export.
        AUTH_URL_ENV: auth_url or "",
    }
    text = (
        "# Written by modelyard deploy; rewritten on every rollout, then gunicorn gets SIGHUP.\n"
        f"bind = {f'127.0.0.1:{port}'!r}\n"
        f"workers = {int(replicas)}\n"
        "worker_class = 'modelyard.deploy.gunicorn_worker.DrainingUvicornWorker'\n"
        "graceful_timeout = 30\n"
        f"chdir = {str(svc.folder)!r}\n"
        "timeout = 60\n"
        f"pidfile = {str(svc.pidfile)!r}\n"
        f"raw_env = {[f'{k}={v}' for k, v in env.items()]!r}\n"
        # the old master renames its pidfile on SIGUSR2; the new one writes this path
        # the master's hooks: the workers' shared metrics folder (one scrape, all workers)
        "from modelyard.deploy.gunicorn_worker import child_exit, on_exit, on_starting\n"
    )
    tmp = svc.config.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.replace(svc.config)
    link = svc.folder / "current.tmp"
    with contextlib.suppress(FileNotFoundError):
        link.unlink()
    link.symlink_to(model_dir)
    link.replace(svc.current)


def log_tail(path: Path, lines: int = 60) -> str:
    try:
        kept = path.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    return "\n".join(kept[-lines:])


def ready_workers(svc: LocalService, master: int) -> int:
    """Workers of ``master`` that loaded the model and accept (markers they leave)."""
    folder = svc.folder / READY_DIR
    count = 0
    for marker in folder.glob(f"{master}-*"):
        try:
            os.kill(int(marker.name.split("-", 1)[1]), 0)
        except (OSError, ValueError):
            continue
        count += 1
    return count


def _spawn_gunicorn(svc: LocalService) -> int:
    """Start the gunicorn master in a session of its own (it outlives this command), output
    appended to the log. Spawned, not a ``Popen``: nothing here waits for it to end."""
    argv = [sys.executable, _gunicorn_script(), "-c", str(svc.config),
            "modelyard.serving.app:create_app_from_env()"]  # fmt: skip
    actions = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(svc.log), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    return os.posix_spawn(sys.executable, argv, dict(os.environ), file_actions=actions,
                          setsid=True)  # fmt: skip


def _gunicorn_script() -> str:
    """The ``gunicorn`` script beside this interpreter. Not ``python -m gunicorn``: on
    ``SIGUSR2`` gunicorn re-executes its own command line, and a ``gunicorn/__main__.py`` path
    puts gunicorn's ``http`` package ahead of the standard library's."""
    script = Path(sys.executable).parent / "gunicorn"
    if not script.is_file():
        raise DeployError(
            f"gunicorn is not installed beside {sys.executable}; the local target needs it "
            "(pip install 'modelyard[deploy]')"
        )
    return str(script)


def _alive(pid: int) -> bool:
    try:
        waited, _ = os.waitpid(pid, os.WNOHANG)
        if waited == pid:
            return False
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def rollout(
    ws: Workspace,
    name: str,
    version: ModelVersion,
    *,
    port: int,
    replicas: int,
    timeout: float = 60.0,
    auth_url: str | None = None,
) -> str:
    """Serve ``version`` as ``name`` on ``port``: start gunicorn, or switch the running one.
    Returns the base URL; raises :class:`RolloutFailed` (the old version still serving). With
    ``auth_url`` the workers require predict tokens of that team server.

    A switch is gunicorn's binary upgrade: ``SIGUSR2`` starts a second master on the same
    listening socket with the rewritten config; once all of its workers have loaded the new
    model (their ready markers), the old master gets ``SIGTERM`` and its workers drain. Until
    then the old workers keep answering, so no request waits for a model to load.
    """
    from modelyard.deploy.probe import require_free_port
    from modelyard.models import export_model

    svc = service(ws, name)
    (svc.folder / READY_DIR).mkdir(parents=True, exist_ok=True)
    model_dir = export_model(ws, version)
    url = f"http://127.0.0.1:{port}"
    old = svc.pid()
    if old is None:
        require_free_port(port)
        _write_config(svc, version, model_dir, port, replicas, auth_url)
        master = _spawn_gunicorn(svc)
        if not wait_until(
            lambda: ready_workers(svc, master) >= replicas,
            timeout=timeout,
            alive=lambda: _alive(master),
        ):
            _terminate(master)
            tail = log_tail(svc.log)
            raise RolloutFailed(f"{version.ref} never became ready on {url}; last log lines:\n"
                                f"{tail}", tail)  # fmt: skip
        return url
    previous = svc.config.read_text()
    _write_config(svc, version, model_dir, port, replicas, auth_url)
    os.kill(old, signal.SIGUSR2)
    new: list[int] = []

    def new_master() -> bool:
        pid = _read_pid(svc.upgrade_pidfile)
        if pid is not None and pid != old:
            new[:] = [pid]
            return True
        return False

    started = wait_until(new_master, timeout=min(timeout, 30.0))
    ok = started and wait_until(
        lambda: ready_workers(svc, new[0]) >= replicas,
        timeout=timeout,
        alive=lambda: _alive(new[0]),
    )
    if not ok:
        if new:
            _terminate(new[0])
        svc.config.write_text(previous)
        tail = log_tail(svc.log)
        raise RolloutFailed(f"{version.ref} never became ready; {url} still serves the previous "
                            f"version. Last log lines:\n{tail}", tail)  # fmt: skip
    _terminate(old)  # graceful: its workers stop accepting, drain, finish in-flight requests
    # The new master notices its parent left and moves its pidfile into place.
    wait_until(lambda: _read_pid(svc.pidfile) == new[0], timeout=10.0)
    return url


def _terminate(pid: int, timeout: float = 35.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            waited, _ = os.waitpid(pid, os.WNOHANG)
            if waited == pid:
                return
        except ChildProcessError:
            try:
                os.kill(pid, 0)
            except OSError:
                return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)


def stop(ws: Workspace, name: str) -> bool:
    """Stop the service gracefully (in-flight requests finish). False if it was not running."""
    svc = service(ws, name)
    pid = svc.pid()
    if pid is None:
        return False
    _terminate(pid)
    svc.pidfile.unlink(missing_ok=True)
    return True


def start_candidate(
    ws: Workspace,
    name: str,
    version: ModelVersion,
    *,
    replicas: int,
    timeout: float = 60.0,
    auth_url: str | None = None,
) -> str:
    """Start ``version`` as the candidate beside service ``name`` (its own gunicorn on a free
    loopback port, logging into the service's prediction log as ``canary``); its URL."""
    from modelyard.deploy.probe import free_port
    from modelyard.models import export_model

    primary = service(ws, name)
    if primary.pid() is None:
        raise DeployError(f"deployment {name!r} is not running; deploy it before a candidate")
    if SPLIT_ENV not in primary.config.read_text():
        raise DeployError(
            f"deployment {name!r} was started by an older modelyard that cannot mirror or "
            f"split traffic; roll its version out once more (modelyard deploy) first"
        )
    svc = primary.candidate
    stop_candidate(ws, name)
    (svc.folder / READY_DIR).mkdir(parents=True, exist_ok=True)
    port = free_port()
    _write_config(svc, version, export_model(ws, version), port, replicas, auth_url,
                  candidate_of=primary)  # fmt: skip
    master = _spawn_gunicorn(svc)
    # Below the serving version's priority (its workers fork after this and inherit it): on a
    # shared host the candidate takes the CPU production leaves, never the other way round.
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, master, CANDIDATE_NICE)
    if not wait_until(
        lambda: ready_workers(svc, master) >= replicas, timeout=timeout,
        alive=lambda: _alive(master),
    ):  # fmt: skip
        _terminate(master)
        tail = log_tail(svc.log)
        raise RolloutFailed(f"candidate {version.ref} never became ready; the serving version "
                            f"was not touched. Last log lines:\n{tail}", tail)  # fmt: skip
    return f"http://127.0.0.1:{port}"


def write_split(svc: LocalService, split: dict[str, object] | None) -> None:
    """Write (or, with None, remove) the split file the service's workers read."""
    import json

    if split is None:
        svc.split_file.unlink(missing_ok=True)
        return
    tmp = svc.split_file.with_suffix(".tmp")
    tmp.write_text(json.dumps(split))
    tmp.replace(svc.split_file)


def candidate_fault(svc: LocalService, replicas: int) -> str | None:
    master = svc.pid()
    if master is None:
        return "the candidate's server is not running"
    markers = len(list((svc.folder / READY_DIR).glob(f"{master}-*")))
    if markers > replicas:  # gunicorn replaced a worker that died
        return f"a candidate worker exited and was restarted ({markers - replicas} time(s))"
    return None


def stop_candidate(ws: Workspace, name: str) -> None:
    primary = service(ws, name)
    write_split(primary, None)
    svc = primary.candidate
    pid = svc.pid()
    if pid is not None:
        _terminate(pid)
    svc.pidfile.unlink(missing_ok=True)
    for marker in (svc.folder / READY_DIR).glob("*"):
        marker.unlink(missing_ok=True)


def endpoints(port: int | None) -> list[str]:
    return [f"http://127.0.0.1:{port}"] if port else []


def logs(ws: Workspace, name: str, lines: int = 50) -> str:
    svc = service(ws, name)
    if not svc.folder.is_dir():
        raise DeployError(f"deployment {name!r} has no local state in {svc.folder}")
    return log_tail(svc.log, lines)


@dataclass(frozen=True)
class LocalOptions(TargetOptions):
    """The ``local`` target has no settings beyond the spec's port and replicas (workers)."""


class LocalTarget(TargetDefaults):
    """gunicorn on this host, serving the model folder straight from the artifact store."""

    name: str = "local"
    options_type: type[TargetOptions] = LocalOptions
    uses_images: bool = False
    publishes_port: bool = True
    default_replicas: int = 1
    default_timeout_s: float = 90.0
    strategies: tuple[str, ...] = (REPLACE, SHADOW, CANARY)
    replica_network: ReplicaNetwork | None = None  # the workers share this host's loopback

    def image_for(self, version: ModelVersion) -> tuple[str | None, str | None]:
        return None, None

    def rollout(self, request: RolloutRequest) -> Rollout:
        spec, ws = request.spec, request.workspace
        options_of(spec, LocalOptions)
        rollout(
            ws,
            spec.name,
            request.version,
            port=spec.port,
            replicas=spec.replicas,
            timeout=spec.timeout_s,
            auth_url=request.auth_url,
        )
        svc = service(ws, spec.name)
        # Recorded: the monitor finds the log through the record, never by which folder exists.
        return Rollout({"state_dir": str(svc.folder), "log_dir": str(svc.predlog)})

    def is_running(self, ws: Workspace, dep: Deployment) -> bool:
        return service(ws, dep.name).pid() is not None

    def replica_urls(self, ws: Workspace, dep: Deployment) -> list[str]:
        return endpoints(dep.port) if self.is_running(ws, dep) else []

    def ready_replicas(
        self, ws: Workspace, dep: Deployment, health: tuple[ReplicaHealth, ...]
    ) -> int:
        """Workers that loaded the model: one address serves them all."""
        if not any(r.ready for r in health):
            return 0
        svc = service(ws, dep.name)
        master = svc.pid()
        return ready_workers(svc, master) if master is not None else 0

    def stop(self, ws: Workspace, dep: Deployment) -> None:
        stop_candidate(ws, dep.name)
        stop(ws, dep.name)

    def logs(self, ws: Workspace, dep: Deployment, lines: int) -> str:
        return logs(ws, dep.name, lines)

    # A progressive rollout's candidate is a second gunicorn on a free loopback port; the
    # serving version's workers mirror to it (shadow) or hand it a share of the requests
    # (canary), as their split file says.
    def start_candidate(self, request: RolloutRequest) -> Rollout:
        spec = request.spec
        options_of(spec, LocalOptions)
        url = start_candidate(
            request.workspace,
            spec.name,
            request.version,
            replicas=spec.replicas,
            timeout=spec.timeout_s,
            auth_url=request.auth_url,
        )
        return Rollout({"url": url, "replicas": spec.replicas})

    def set_split(self, ws: Workspace, dep: Deployment, split: TrafficSplit | None) -> None:
        urls = self.candidate_urls(ws, dep)
        if split is not None and not urls:
            raise DeployError(f"deployment {dep.name!r} has no candidate running")
        write_split(service(ws, dep.name),
                    None if split is None else {**split.to_dict(), "candidates": urls})  # fmt: skip

    def candidate_urls(self, ws: Workspace, dep: Deployment) -> list[str]:
        candidate = (dep.config or {}).get("candidate") or {}
        url = candidate.get("url")
        running = service(ws, dep.name).candidate.pid() is not None
        return [str(url)] if url and running else []

    def candidate_fault(self, ws: Workspace, dep: Deployment) -> str | None:
        candidate = (dep.config or {}).get("candidate") or {}
        return candidate_fault(service(ws, dep.name).candidate, int(candidate.get("replicas", 1)))

    def stop_candidate(self, ws: Workspace, dep: Deployment) -> None:
        stop_candidate(ws, dep.name)
