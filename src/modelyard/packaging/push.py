"""``modelyard push churn@4 --registry HOST/PATH``: tag, push, verify by digest, record.

Credentials come from the Docker config the CLI already uses, or from a password read on
stdin, which is handed to ``docker login --password-stdin`` inside a temporary Docker config
folder (deleted afterwards), so no password is ever an argument, in a log, or left on disk.
"""

from __future__ import annotations

import os
import re
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from modelyard.errors import ImageError, NotFound, RegistryError

if TYPE_CHECKING:
    from modelyard.images import DockerEngine
    from modelyard.store.models_entities import ModelVersion
    from modelyard.workspace import Workspace

_AUTH = re.compile(
    r"unauthorized|authentication required|no basic auth credentials|incorrect username or "
    r"password|denied",
    re.I,
)


@dataclass(frozen=True)
class PushResult:
    version: ModelVersion
    tags: tuple[str, ...]
    digest: str  # the registry's manifest digest
    ref: str  # REPO@DIGEST: what deployments pull
    # An image of the OCI builder is pushed with its SBOM beside it (packaging.oci_push).
    sbom_ref: str | None = None  # REPO:sha256-<hex>.sbom
    sbom_digest: str | None = None
    sbom_referrers_api: bool = False


def registry_repository(registry: str, model_name: str) -> str:
    """``HOST[:PORT]/PATH/<model>``, checked like every value that reaches docker."""
    from modelyard.images import validate as v

    repo = f"{registry.strip().rstrip('/')}/{model_name.lower()}"
    return v.check_image_ref("registry", repo)


def push_model_image(
    ref: str,
    registry: str,
    *,
    workspace: Workspace | None = None,
    engine: DockerEngine | None = None,
    username: str | None = None,
    password: str | None = None,
    attempts: int = 4,
    backoff_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> PushResult:
    """Push the image built for ``ref`` as ``:VERSION`` and ``:sha-<12 hex of the model
    digest>``; record the remote digest on the version after pulling it back by digest.

    An image the OCI builder wrote (``modelyard build --builder oci``) is pushed without a
    Docker engine, with the distribution API. Either way the SBOM the build recorded is pushed
    beside the image (:mod:`modelyard.packaging.oci_push`).

    A registry that is down or answers 5xx is tried ``attempts`` times with doubling waits;
    then :class:`RegistryError` is raised, the local tags made for the push are removed, and
    nothing is recorded. Refused credentials fail at once (retrying cannot help).
    """
    from modelyard.images import DockerEngine
    from modelyard.models import resolve
    from modelyard.workspace import resolve as resolve_workspace

    ws = resolve_workspace(workspace)
    version = resolve(ref, ws)
    if version.image_id is None:
        raise NotFound(f"{version.ref} has no image yet; build it first: modelyard build {ref}")
    repo = registry_repository(registry, version.name)
    from modelyard.packaging.oci_push import oci_manifest_of, push_oci_image

    oci = oci_manifest_of(ws, version)
    if oci is not None:
        pushed = push_oci_image(
            ws,
            version,
            oci,
            repo,
            username=username,
            password=password,
            attempts=attempts,
            backoff_s=backoff_s,
            sleep=sleep,
        )
        return PushResult(
            pushed.version,
            pushed.tags,
            pushed.digest,
            pushed.ref,
            sbom_ref=f"{repo}:{pushed.sbom.tag}",
            sbom_digest=pushed.sbom.digest,
            sbom_referrers_api=pushed.sbom.referrers_api,
        )
    tags = (f"{repo}:{version.version}", f"{repo}:sha-{version.digest.split(':')[-1][:12]}")
    engine = engine or DockerEngine.from_env()
    engine.ping()
    if engine.inspect_image(version.image_id) is None:
        raise NotFound(
            f"image {version.image_id[:19]} of {version.ref} is not in the engine at "
            f"{engine.host}; build it again: modelyard build {ref}"
        )
    digest = push_image(
        engine,
        version.image_id,
        repo,
        tags,
        username=username,
        password=password,
        attempts=attempts,
        backoff_s=backoff_s,
        sleep=sleep,
    )
    from modelyard.packaging.lineage import record_push
    from modelyard.packaging.oci_push import push_sbom_beside

    remote = record_push(ws, version, repo, digest)
    sbom = push_sbom_beside(ws, version, repo, digest, username=username, password=password)
    return PushResult(
        ws.store.models.get_version(version.name, version.version),
        tags,
        digest,
        remote,
        sbom_ref=f"{repo}:{sbom.tag}" if sbom else None,
        sbom_digest=sbom.digest if sbom else None,
        sbom_referrers_api=bool(sbom and sbom.referrers_api),
    )


def push_image(
    engine: DockerEngine,
    image: str,
    repo: str,
    tags: tuple[str, ...],
    *,
    username: str | None = None,
    password: str | None = None,
    attempts: int = 4,
    backoff_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Tag the local ``image`` as each of ``tags`` (all in ``repo``), push them, pull the
    result back by digest and return that digest; on failure the tags are removed again."""
    host = repo.split("/", 1)[0]
    with _credentials(engine, host, username, password) as eng:
        for tag in tags:
            eng.run(["tag", image, tag])
        try:
            for tag in tags:
                _push_with_retries(eng, tag, host, attempts, backoff_s, sleep)
            digest = _remote_digest(eng, repo, image)
            _pull(eng, f"{repo}@{digest}", host)
        except BaseException:
            for tag in tags:
                eng.run(["rmi", "--no-prune", tag], check=False)
            raise
    return digest


@contextmanager
def _credentials(
    engine: DockerEngine, host: str, username: str | None, password: str | None
) -> Iterator[DockerEngine]:
    if password is None:
        yield engine
        return
    if not username:
        raise RegistryError("a password was given without a user name (--username)")
    with tempfile.TemporaryDirectory(prefix="modelyard-docker-config-") as tmp:
        os.chmod(tmp, 0o700)
        scoped = replace(engine, environ={**engine.process_env(), "DOCKER_CONFIG": tmp})
        proc = scoped.run(
            ["login", "--username", username, "--password-stdin", host],
            input=password.encode(),
            check=False,
            timeout=60,
        )
        if proc.returncode != 0:
            detail = proc.stderr.decode(errors="replace").strip().splitlines()
            reason = detail[-1] if detail else f"exit {proc.returncode}"
            if _AUTH.search(reason):
                raise RegistryError(
                    f"registry {host} refused the credentials of user {username!r}: "
                    "wrong user name or password"
                )
            raise RegistryError(f"could not log in to registry {host}: {reason}")
        yield scoped


def _push_with_retries(
    engine: DockerEngine,
    tag: str,
    host: str,
    attempts: int,
    backoff_s: float,
    sleep: Callable[[float], None],
) -> None:
    last = ""
    for attempt in range(1, max(1, attempts) + 1):
        down = registry_down(host)
        if down is not None:
            last = down
            if attempt < attempts:
                sleep(backoff_s * 2 ** (attempt - 1))
            continue
        proc = engine.run(["push", tag], check=False, timeout=600)
        if proc.returncode == 0:
            return
        out = (proc.stderr + proc.stdout).decode(errors="replace").strip().splitlines()
        last = out[-1] if out else f"exit {proc.returncode}"
        if _AUTH.search(last):
            raise RegistryError(
                f"registry {host} refused the push of {tag}: {last} (log in with "
                "'docker login', or pass --username and --password-stdin)"
            )
        if attempt < attempts:
            sleep(backoff_s * 2 ** (attempt - 1))
    raise RegistryError(
        f"could not push {tag}: registry {host} did not accept it after {attempts} attempt(s) "
        f"({last}); nothing was recorded"
    )


def registry_down(host: str, timeout: float = 5.0) -> str | None:
    """Why the registry's API root does not answer (refused, 5xx), or None when it does (200,
    or 401 asking for credentials). Checked before each push: the engine retries a dead
    registry for minutes on its own before it reports anything."""
    import urllib.error
    import urllib.request

    local = host.split(":")[0] in ("localhost", "127.0.0.1", "[::1]")
    url = f"{'http' if local else 'https'}://{host}/v2/"
    try:
        with urllib.request.urlopen(url, timeout=timeout):
            return None
    except urllib.error.HTTPError as exc:
        return None if exc.code < 500 else f"the registry answered HTTP {exc.code}"
    except OSError as exc:
        reason = getattr(exc, "reason", exc)
        return f"the registry does not answer ({reason})"


def _remote_digest(engine: DockerEngine, repo: str, image_id: str) -> str:
    data = engine.inspect_image(image_id) or {}
    for entry in data.get("RepoDigests") or []:
        name, _, digest = str(entry).partition("@")
        if name == repo and digest:
            return digest
    raise ImageError(f"the engine reports no registry digest for {repo} after the push")


def _pull(engine: DockerEngine, ref: str, host: str) -> None:
    proc = engine.run(["pull", ref], check=False, timeout=600)
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise RegistryError(
            f"pushed, but pulling {ref} back from {host} failed: {detail[-1] if detail else ''}"
        )
