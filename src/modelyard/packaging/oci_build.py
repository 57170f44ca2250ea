"""``modelyard build churn@4 --builder oci``: the model image written as an OCI image by
modelyard itself, without a Docker engine, the same bytes from the same inputs.

Layers, in today's order (base → dependencies → runtime → model):

===========  =================================================================================
base         the base image's own layers, unchanged (from a registry by digest, or a local
             image through ``docker save``)
user         ``/etc/passwd`` and ``/etc/group`` of the base plus the ``modelyard`` user (10001),
             its home folder
deps         the virtual environment: the locked wheels unpacked, trimmed, byte-compiled
runtime      modelyard's own serving code, in the same environment
model        the model folder and the SBOM under ``/opt/modelyard/app``
===========  =================================================================================

The image goes into the workspace's OCI image layout (``.modelyard/oci``, named
``<model>-<version>``) and ``modelyard push`` sends it with the distribution API. Its config's
``created`` (and the ``org.opencontainers.image.created`` label) is ``SOURCE_DATE_EPOCH`` when
set, else the time of the run's git commit, else the version's registration time: never the
time of the build. The deps and user layers are cached by what they are made of, so a new
version with the same lock writes one small layer.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard import image_contract as contract
from modelyard.errors import InvalidParameter

if TYPE_CHECKING:
    from modelyard.images.oci import Entry, ImageLayout, Layer
    from modelyard.images.oci_base import BaseImage
    from modelyard.store.models_entities import ModelVersion
    from modelyard.workspace import Workspace

# Bumped whenever the bytes of a layer for the same inputs change: part of every cache key.
RECIPE = "modelyard-oci-1"
LAYOUT_DIR = "oci"
# Imported only by the V2 gRPC endpoint (``--grpc-port``), which no image entrypoint starts.
GRPC_PACKAGES = ("grpcio", "protobuf")


@dataclass(frozen=True)
class OciImage:
    """A model image in the workspace's image layout."""

    version: ModelVersion
    name: str  # the layout's name for it: <model>-<version>
    manifest_digest: str
    config_digest: str
    layers: tuple[tuple[str, Layer], ...]  # (role, layer), base layers first
    size: int  # uncompressed, as an engine reports it once pulled
    build_seconds: float

    @property
    def id(self) -> str:
        return self.config_digest


def layout_of(ws: Workspace) -> ImageLayout:
    from modelyard.images.oci import ImageLayout

    return ImageLayout(ws.state_dir / LAYOUT_DIR).init()


def layout_name(version: ModelVersion) -> str:
    return f"{version.name.lower()}-{version.version}"


def source_date(
    ws: Workspace, version: ModelVersion, environ: Mapping[str, str] | None = None
) -> datetime:
    """``SOURCE_DATE_EPOCH``, else the commit time of the version's run, else its
    registration time (see the module docstring)."""
    env = os.environ if environ is None else environ
    raw = env.get("SOURCE_DATE_EPOCH", "").strip()
    if raw:
        if not raw.isdigit():
            raise InvalidParameter(f"SOURCE_DATE_EPOCH={raw!r} is not a number of seconds")
        return datetime.fromtimestamp(int(raw), UTC)
    run = ws.store.runs.get(version.run_id) if version.run_id else None
    if run is not None and run.git_commit:
        proc = subprocess.run(
            ["git", "-C", str(ws.root), "show", "-s", "--format=%ct", run.git_commit],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
        )
        if proc.returncode == 0 and proc.stdout.strip().isdigit():
            return datetime.fromtimestamp(int(proc.stdout.strip()), UTC)
    stamp = version.created_at
    return (stamp if stamp.tzinfo else stamp.replace(tzinfo=UTC)).astimezone(UTC)


def _iso(moment: datetime) -> str:
    return moment.replace(microsecond=0).isoformat().replace("+00:00", "Z")


def build_oci_image(
    ref: str,
    *,
    workspace: Workspace | None = None,
    base_image: str | None = None,
    wheelhouse_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    no_cache: bool = False,
    username: str | None = None,
    password: str | None = None,
    environ: Mapping[str, str] | None = None,
    grpc: bool = False,
    bytecode: bool = True,
) -> OciImage:
    """Write the image of ``ref`` into the workspace's image layout and record it on the
    version (its config digest as the image id, its size, ``model_version -built_into->
    image``, the SBOM). Nothing here talks to a Docker engine unless the base is a local
    image; nothing is recorded unless the whole image was written.

    The gRPC endpoint's packages (``grpcio``, ``protobuf``: 20 MB) are left out unless
    ``grpc``: the image's entrypoint serves HTTP only, and the server imports them only with
    ``--grpc-port``. A flavor that needs protobuf itself (ONNX) still gets it. Without
    ``bytecode`` no ``.pyc`` is shipped: a smaller image whose every start compiles what it
    imports (a read-only root keeps nothing)."""
    from dataclasses import replace

    from modelyard.image_contract import SBOM_FILE
    from modelyard.images import validate as v
    from modelyard.images.oci_base import load_base
    from modelyard.images.wheelhouse import parse_wheel_filename
    from modelyard.packaging.dockerfile import default_base_image, plan_model_image
    from modelyard.packaging.sbom import make_sbom, record_sbom
    from modelyard.workspace import resolve as resolve_workspace

    started = time.perf_counter()
    say = progress or (lambda _msg: None)
    ws = resolve_workspace(workspace)
    base_name = v.check_image_ref("base image", base_image or default_base_image(ws))
    layout = layout_of(ws)
    say(f"Reading base image {base_name}")
    base = load_base(base_name, layout, username=username, password=password)
    plan = plan_model_image(
        ref,
        workspace=ws,
        base_image=base_name,
        wheelhouse_dir=wheelhouse_dir,
        progress=progress,
        without=() if grpc else GRPC_PACKAGES,
    )
    version = plan.version
    wheels = {name: (plan.lock[name], w) for name, w in plan.wheelhouse.require(plan.lock).items()}
    runtime = plan.spec.runtime_wheel
    parsed = parse_wheel_filename(runtime.name) if runtime is not None else None
    sbom_wheels = dict(wheels)
    if runtime is not None and parsed is not None:
        sbom_wheels[parsed[0]] = (parsed[1], runtime)
    sbom = make_sbom(version, sbom_wheels, base.debian, base_image=base_name)
    created = source_date(ws, version, environ)

    say("Writing the user layer")
    user = _cached_layer(
        layout,
        {"role": "user", "passwd": base.passwd, "group": base.group},
        lambda: _user_entries(base),
        no_cache,
    )
    say(f"Writing the dependency layer ({len(wheels)} wheels)")
    deps = _cached_layer(
        layout,
        {
            "role": "deps",
            "python": base.python,
            "wheels": _wheel_digests(w for _, w in wheels.values()),
            "tools": _tools(),
            "bytecode": bytecode,
        },
        lambda tmp: _venv_entries(
            tmp, sorted((w for _, w in wheels.values()), key=lambda p: p.name), base, bytecode
        ),
        no_cache,
        staged=True,
    )
    runtime_wheels = [runtime] if runtime is not None else []
    say("Writing the runtime layer")
    run_layer = _cached_layer(
        layout,
        {
            "role": "runtime",
            "python": base.python,
            "wheels": _wheel_digests(runtime_wheels),
            "tools": _tools(),
            "bytecode": bytecode,
        },
        lambda tmp: _venv_entries(tmp, runtime_wheels, base, bytecode, skeleton=False),
        no_cache,
        staged=True,
    )
    say("Writing the model layer")
    with tempfile.TemporaryDirectory(prefix="modelyard-oci-model-") as tmp:
        sbom_file = Path(tmp) / SBOM_FILE
        sbom_file.write_bytes(sbom)
        spec = replace(plan.spec, payload={**plan.spec.payload, SBOM_FILE: sbom_file})
        model = _write(layout, _payload_entries(spec.payload))
    layers = [("base", layer) for layer in base.layers]
    layers += [("user", user), ("deps", deps), ("runtime", run_layer), ("model", model)]
    config = _config(base, spec, created, [layer for _, layer in layers])
    config_digest = layout.put_bytes(_json(config))
    manifest = _manifest(base, config_digest, len(_json(config)), [x for _, x in layers], created)
    manifest_bytes = _json(manifest)
    manifest_digest = layout.put_bytes(manifest_bytes)
    from modelyard.images.oci import MANIFEST, Descriptor

    name = layout_name(version)
    layout.tag(name, Descriptor(MANIFEST, manifest_digest, len(manifest_bytes)))
    size = sum(layer.uncompressed_size for _, layer in layers)
    record_sbom(ws, version, sbom)
    ws.store.models.set_image(
        version.name,
        version.version,
        image_id=config_digest,
        image_digest=None,
        image_size=size,
        image_ref=None,
    )
    ws.store.lineage.add("model_version", version.ref, "image", config_digest, "built_into")
    return OciImage(
        version=ws.store.models.get_version(version.name, version.version),
        name=name,
        manifest_digest=manifest_digest,
        config_digest=config_digest,
        layers=tuple(layers),
        size=size,
        build_seconds=time.perf_counter() - started,
    )


def _recipe() -> str:
    """RECIPE and the source of the modules that write layers: a cached layer is reused only
    by the code that would write the same bytes."""
    from modelyard.images import oci, venv

    h = hashlib.sha256(RECIPE.encode())
    for module in (oci, venv):
        h.update(Path(module.__file__ or "").read_bytes())
    return h.hexdigest()


def _tools() -> list[str | None]:
    """What writes the bytes of an environment layer besides its wheels: the interpreter that
    compiles its byte code and the ``strip`` that trims its shared objects."""
    from modelyard.images.venv import strip_tool

    return [sys.version, strip_tool()]


def _json(value: Any) -> bytes:
    from modelyard.images.oci import canonical_json

    return canonical_json(value)


def _wheel_digests(wheels: Any) -> list[str]:
    from modelyard.packaging.sbom import sha256_file

    return sorted(f"{w.name}:{sha256_file(w)}" for w in wheels)


def _cached_layer(
    layout: ImageLayout,
    key: Mapping[str, Any],
    entries: Callable[..., list[Entry]],
    no_cache: bool,
    *,
    staged: bool = False,
) -> Layer:
    """The layer made of ``key``'s inputs: read back from the layout's cache, or written."""
    import json

    from modelyard.images.oci import Descriptor, Layer

    digest = hashlib.sha256(_json({"recipe": _recipe(), **key})).hexdigest()
    cached = layout.root / "cache" / f"{digest}.json"
    if not no_cache and cached.is_file():
        data = json.loads(cached.read_text())
        layer = Layer(Descriptor.from_json(data["descriptor"]), data["diff_id"], data["size"])
        if layout.has(layer.digest):
            return layer
    if staged:
        with tempfile.TemporaryDirectory(prefix="modelyard-oci-stage-") as tmp:
            layer = _write(layout, entries(Path(tmp)))
    else:
        layer = _write(layout, entries())
    cached.parent.mkdir(parents=True, exist_ok=True)
    part = cached.with_suffix(".part")
    part.write_text(
        json.dumps(
            {
                "descriptor": layer.descriptor.to_json(),
                "diff_id": layer.diff_id,
                "size": layer.uncompressed_size,
            }
        )
    )
    part.replace(cached)
    return layer


def _write(layout: ImageLayout, entries: list[Entry]) -> Layer:
    from modelyard.images.oci import write_layer

    return write_layer(layout, entries)


def _user_entries(base: BaseImage) -> list[Entry]:
    from modelyard.images.oci import dir_entry, file_entry

    user, uid, home = contract.USER, contract.UID, contract.HOME
    passwd, group = base.passwd, base.group
    if not any(line.split(":")[0] == user for line in passwd.splitlines()):
        passwd = (
            _ensure_newline(passwd) + f"{user}:x:{uid}:{contract.GID}::{home}:/usr/sbin/nologin\n"
        )
    if not any(line.split(":")[0] == user for line in group.splitlines()):
        group = _ensure_newline(group) + f"{user}:x:{contract.GID}:\n"
    return [
        file_entry("etc/passwd", passwd.encode()),
        file_entry("etc/group", group.encode()),
        dir_entry(home.lstrip("/"), 0o755, uid=uid, gid=contract.GID),
    ]


def _ensure_newline(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


def _venv_entries(
    tmp: Path, wheels: list[Path], base: BaseImage, bytecode: bool, *, skeleton: bool = True
) -> list[Entry]:
    from modelyard.images.oci import tree_entries
    from modelyard.images.venv import VenvLayout, install_packages, write_skeleton

    venv = VenvLayout(contract.VENV, base.python_minor)
    root = tmp / "venv"
    root.mkdir()
    if skeleton:
        write_skeleton(root, venv, base.python)
    install_packages(wheels, root, venv, bytecode=bytecode)
    return tree_entries(root, contract.VENV.lstrip("/"))


def _payload_entries(payload: Mapping[str, Path]) -> list[Entry]:
    from modelyard.images import validate as v
    from modelyard.images.oci import dir_entry, file_entry, tree_entries

    app = contract.APP_DIR.lstrip("/")
    out = [dir_entry(app)]
    for rel, src in sorted(payload.items()):
        target = f"{app}/{v.check_relative_path('payload path', rel)}"
        if src.is_dir():
            out += [
                e
                for e in tree_entries(src, target)
                if "__pycache__" not in e.path.split("/") and not e.path.endswith(".pyc")
            ]
        else:
            out.append(file_entry(target, src.read_bytes()))
    return out


def _config(base: BaseImage, spec: Any, created: datetime, layers: list[Layer]) -> dict[str, Any]:
    from modelyard.images.context import oci_labels

    base_cfg = dict(base.config.get("config") or {})
    env = [e for e in base_cfg.get("Env") or [] if isinstance(e, str)]
    path = next((e.split("=", 1)[1] for e in env if e.startswith("PATH=")), None)
    path = path or "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
    ours = {
        "VIRTUAL_ENV": contract.VENV,
        "PATH": f"{contract.VENV}/bin:{path}",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        **dict(spec.env),
    }
    env = [e for e in env if e.split("=", 1)[0] not in ours]
    env += [f"{k}={val}" for k, val in ours.items()]
    labels = {**dict(base_cfg.get("Labels") or {}), **oci_labels(spec, created)}
    inner: dict[str, Any] = {
        "Env": env,
        "User": f"{contract.UID}:{contract.GID}",
        "WorkingDir": contract.APP_DIR,
        "Labels": labels,
        "ExposedPorts": {f"{p}/tcp": {} for p in spec.expose},
    }
    if spec.entrypoint is not None:
        inner["Entrypoint"] = list(spec.entrypoint)
    if spec.cmd is not None:
        inner["Cmd"] = list(spec.cmd)
    if spec.healthcheck is not None:
        hc, ns = spec.healthcheck, 1_000_000_000
        inner["Healthcheck"] = {
            "Test": ["CMD", *hc.command],
            "Interval": hc.interval_s * ns,
            "Timeout": hc.timeout_s * ns,
            "StartPeriod": hc.start_period_s * ns,
            "Retries": hc.retries,
        }
    stamp = _iso(created)
    history = [h for h in base.config.get("history") or [] if isinstance(h, dict)]
    if sum(1 for h in history if not h.get("empty_layer")) != len(base.layers):
        history = [{"created": stamp, "created_by": f"base {base.name}"} for _ in base.layers]
    for role in ("user", "deps", "runtime", "model"):
        history.append({"created": stamp, "created_by": f"modelyard {RECIPE}: {role}"})
    return {
        "architecture": base.config.get("architecture") or "amd64",
        "os": base.config.get("os") or "linux",
        "created": stamp,
        "config": inner,
        "rootfs": {"type": "layers", "diff_ids": [layer.diff_id for layer in layers]},
        "history": history,
    }


def _manifest(
    base: BaseImage, config_digest: str, config_size: int, layers: list[Layer], created: datetime
) -> dict[str, Any]:
    from modelyard.images.oci import CONFIG, MANIFEST

    annotations = {
        "org.opencontainers.image.created": _iso(created),
        "org.opencontainers.image.base.name": base.name,
    }
    if base.digest:
        annotations["org.opencontainers.image.base.digest"] = base.digest
    return {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": {"mediaType": CONFIG, "digest": config_digest, "size": config_size},
        "layers": [layer.descriptor.to_json() for layer in layers],
        "annotations": annotations,
    }
