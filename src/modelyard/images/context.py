"""A build context: a Dockerfile plus the files it copies, self-contained and offline.

Every image modelyard makes has the same shape — base → dependencies → modelyard runtime →
payload — ordered by how often each part changes, so a new model or new step code rebuilds only
the last layer. The dependency wheels are installed in a separate stage and only the finished
virtual environment is copied over, so the wheels themselves never bloat the image. The folder
this module writes can be handed to a team's own CI: it builds with plain ``docker build``.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from modelyard import image_contract as contract
from modelyard._version import __version__
from modelyard.errors import UnsafeDockerfileValue
from modelyard.images import validate as v
from modelyard.images.wheelhouse import Wheelhouse, canonical_name

DEFAULT_BASE_IMAGE = "modelyard/base:py3.11-bookworm"
VENV = contract.VENV
APP_DIR = contract.APP_DIR
USER_UID = contract.UID


@dataclass(frozen=True)
class Healthcheck:
    """``HEALTHCHECK CMD [...]`` in exec form (no shell), with Docker's timing options."""

    command: tuple[str, ...]
    interval_s: int = 10
    timeout_s: int = 3
    start_period_s: int = 5
    retries: int = 3


@dataclass(frozen=True)
class ImageSpec:
    """What goes into an image: base + wheel requirements + payload files + entrypoint + labels.

    ``requirements`` is an exact lock (``{name: version}``, dependencies included) installed
    from the wheelhouse; ``runtime_wheel`` (usually modelyard's own) is installed on top in its
    own layer; ``payload`` maps a path under ``/opt/modelyard/app`` to a file or folder on the
    host. ``system_packages`` installs Debian packages with apt-get inside the build, which
    needs a reachable apt mirror — prefer baking them into the base image
    (:func:`modelyard.images.build_base_image`), which keeps the build offline.
    """

    base_image: str = DEFAULT_BASE_IMAGE
    requirements: Mapping[str, str] = field(default_factory=dict)
    runtime_wheel: Path | None = None
    runtime_extras: tuple[str, ...] = ()
    payload: Mapping[str, Path] = field(default_factory=dict)
    system_packages: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    title: str | None = None
    version: str | None = None
    revision: str | None = None
    source: str | None = None
    entrypoint: tuple[str, ...] | None = None
    cmd: tuple[str, ...] | None = None
    expose: tuple[int, ...] = ()
    healthcheck: Healthcheck | None = None
    user: str = contract.USER

    @property
    def needs_network(self) -> bool:
        """Only apt-get needs a network; everything else comes from the context."""
        return bool(self.system_packages)


@dataclass(frozen=True)
class BuildContext:
    path: Path
    dockerfile: str
    labels: Mapping[str, str]
    needs_network: bool = False


def oci_labels(spec: ImageSpec, created: datetime | None = None) -> dict[str, str]:
    """OCI ``org.opencontainers.image.*`` labels from the spec, then the caller's own labels
    (``io.modelyard.*`` lineage and anything else), all checked."""
    stamp = (created or datetime.now(UTC)).replace(microsecond=0)
    labels = {"org.opencontainers.image.created": stamp.isoformat().replace("+00:00", "Z")}
    for key, value in (
        ("title", spec.title),
        ("version", spec.version),
        ("revision", spec.revision),
        ("source", spec.source),
    ):
        if value is not None:
            labels[f"org.opencontainers.image.{key}"] = value
    labels["io.modelyard.builder"] = f"modelyard {__version__}"
    labels.update(spec.labels)
    for key, value in labels.items():
        v.check_label_key("label key", key)
        v.check_text(f"label {key}", value)
    return labels


def render_dockerfile(spec: ImageSpec, labels: Mapping[str, str] | None = None) -> str:
    """The Dockerfile text for ``spec`` (expects the context laid out by :func:`write_context`).
    Every value is validated first; a bad one raises :class:`UnsafeDockerfileValue`."""
    base = v.check_image_ref("base image", spec.base_image)
    packages = [v.check_package("system package", p) for p in spec.system_packages]
    user = v.check_user("user", spec.user)
    env = {
        v.check_env_name("env name", k): v.check_text(f"env {k}", val)
        for k, val in spec.env.items()
    }
    for extra in spec.runtime_extras:
        v.check_env_name("runtime extra", extra.replace("-", "_"))
    labels = dict(labels) if labels is not None else oci_labels(spec)
    for port in spec.expose:
        if not isinstance(port, int) or not 0 < port < 65536:
            raise UnsafeDockerfileValue(f"expose port {port!r} is not a port number")

    lines = [
        f"# Rendered by modelyard {__version__}. Builds offline: every Python package comes from",
        "# wheels/ in this folder (pip --no-index); nothing is fetched during the build.",
        "",
        "# -- dependencies: installed in their own stage; only the virtualenv is kept --------",
        f"FROM {base} AS deps",
        "ENV PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1",
        "COPY wheels/deps/ /tmp/modelyard-wheels/",
    ]
    if spec.requirements:
        lines += [
            f"RUN python3 -m venv {VENV} \\",
            f" && {VENV}/bin/pip install --no-index --find-links /tmp/modelyard-wheels \\",
            "      -r /tmp/modelyard-wheels/requirements.lock",
        ]
    else:
        lines += [f"RUN python3 -m venv {VENV}"]
    lines += [
        "",
        "# -- the image ---------------------------------------------------------------------",
        f"FROM {base}",
    ]
    if packages:
        lines += [
            "RUN apt-get update \\",
            " && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "
            + " ".join(packages)
            + " \\",
            " && rm -rf /var/lib/apt/lists/*",
        ]
    lines += [
        # useradd is not in every minimal base (Debian's 'essential' set lacks it).
        "RUN if command -v useradd >/dev/null 2>&1; then \\",
        f"      groupadd --system --gid {USER_UID} {user} \\",
        f"      && useradd --system --uid {USER_UID} --gid {USER_UID} --create-home {user}; \\",
        "    else \\",
        f"      echo '{user}:x:{USER_UID}:{USER_UID}::/home/{user}:/usr/sbin/nologin' \\",
        "        >> /etc/passwd \\",
        f"      && echo '{user}:x:{USER_UID}:' >> /etc/group \\",
        f"      && mkdir -p /home/{user} && chown {USER_UID}:{USER_UID} /home/{user}; \\",
        "    fi",
        f"COPY --from=deps {VENV} {VENV}",
        f'ENV VIRTUAL_ENV={VENV} PATH="{VENV}/bin:$PATH" PYTHONUNBUFFERED=1 \\',
        "    PYTHONDONTWRITEBYTECODE=1 PIP_NO_INDEX=1 PIP_DISABLE_PIP_VERSION_CHECK=1",
    ]
    if spec.runtime_wheel is not None:
        target = "/tmp/modelyard-runtime/" + spec.runtime_wheel.name
        if spec.runtime_extras:
            target += "[" + ",".join(spec.runtime_extras) + "]"
        lines += [
            "",
            "# -- runtime: modelyard itself (dependencies already installed above) ------------",
            "COPY wheels/runtime/ /tmp/modelyard-runtime/",
            "RUN pip install --no-index --no-cache-dir --find-links /tmp/modelyard-runtime \\",
            f"      '{target}' \\",
            " && rm -rf /tmp/modelyard-runtime",
        ]
    lines += [
        "",
        "# -- payload: changes most often, so it comes last --------------------------------",
    ]
    lines += [f"WORKDIR {APP_DIR}"]
    if spec.payload:
        lines += [f"COPY payload/ {APP_DIR}/"]
    lines += [""]
    if env:
        lines += ["ENV " + " \\\n    ".join(f"{k}={v.quote(val)}" for k, val in env.items())]
    for port in spec.expose:
        lines += [f"EXPOSE {port}"]
    if spec.healthcheck is not None:
        hc = spec.healthcheck
        cmd = [v.check_text("healthcheck command", part) for part in hc.command]
        lines += [
            f"HEALTHCHECK --interval={int(hc.interval_s)}s --timeout={int(hc.timeout_s)}s "
            f"--start-period={int(hc.start_period_s)}s --retries={int(hc.retries)} "
            f"CMD {json.dumps(cmd)}"
        ]
    lines += ["LABEL " + " \\\n      ".join(f"{key}={v.quote(val)}" for key, val in labels.items())]
    lines += [f"USER {USER_UID}:{USER_UID}"]
    if spec.entrypoint is not None:
        parts = [v.check_text("entrypoint", p) for p in spec.entrypoint]
        lines += [f"ENTRYPOINT {json.dumps(parts)}"]
    if spec.cmd is not None:
        parts = [v.check_text("cmd", p) for p in spec.cmd]
        lines += [f"CMD {json.dumps(parts)}"]
    return "\n".join(lines) + "\n"


def write_context(
    spec: ImageSpec,
    dest: Path,
    *,
    wheelhouse: Wheelhouse | None = None,
    created: datetime | None = None,
) -> BuildContext:
    """Lay out ``dest`` (emptied first) as a complete build context for ``spec``.

    Checks run before anything is copied: an unsafe value raises
    :class:`~modelyard.errors.UnsafeDockerfileValue`, a locked package the wheelhouse lacks a
    :class:`~modelyard.errors.WheelhouseError` naming it.
    """
    labels = oci_labels(spec, created)
    dockerfile = render_dockerfile(spec, labels)
    payload = {v.check_relative_path("payload path", k): src for k, src in spec.payload.items()}
    for rel, src in payload.items():
        if not src.exists():
            raise UnsafeDockerfileValue(f"payload {rel!r}: {src} does not exist")
    wheels: dict[str, Path] = {}
    if spec.requirements:
        if wheelhouse is None:
            raise UnsafeDockerfileValue(
                f"{len(spec.requirements)} requirement(s) but no wheelhouse to install them from"
            )
        wheels = wheelhouse.require(spec.requirements)
    if spec.runtime_wheel is not None and not spec.runtime_wheel.is_file():
        raise UnsafeDockerfileValue(f"runtime wheel {spec.runtime_wheel} does not exist")

    if dest.exists():
        shutil.rmtree(dest)
    (dest / "wheels" / "deps").mkdir(parents=True)
    (dest / "wheels" / "runtime").mkdir()
    (dest / "payload").mkdir()
    for wheel in wheels.values():
        _link_or_copy(wheel, dest / "wheels" / "deps" / wheel.name)
    lock_lines = [
        f"{name}=={version}"
        for name, version in sorted(spec.requirements.items(), key=lambda kv: canonical_name(kv[0]))
    ]
    (dest / "wheels" / "deps" / "requirements.lock").write_text(
        "# exact lock, installed with pip --no-index from this folder\n"
        + "".join(f"{line}\n" for line in lock_lines)
    )
    if spec.runtime_wheel is not None:
        _link_or_copy(spec.runtime_wheel, dest / "wheels" / "runtime" / spec.runtime_wheel.name)
    for rel, src in payload.items():
        target = dest / "payload" / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, target, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(src, target)
    (dest / "Dockerfile").write_text(dockerfile)
    (dest / ".dockerignore").write_text("**/__pycache__\n**/*.pyc\n")
    return BuildContext(
        path=dest, dockerfile=dockerfile, labels=labels, needs_network=spec.needs_network
    )


def _link_or_copy(src: Path, dst: Path) -> None:
    try:
        dst.hardlink_to(src)
    except OSError:
        shutil.copy2(src, dst)
