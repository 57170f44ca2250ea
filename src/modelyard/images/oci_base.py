"""The base of a daemonless image: its config, its layers in the image layout, and what the
model image needs to know of its file system (the interpreter, the user table, the Debian
packages).

A base named with a registry (``HOST/REPO@sha256:…``, or a tag, resolved to its digest and
recorded) is read with the distribution API: no engine anywhere. A base with no registry in its
name (``modelyard/base:py3.11-bookworm``) is a local image, read once with ``docker save``;
its layers are compressed here the reproducible way, so the same local image gives the same
blobs.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
import shutil
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import ImageBuildFailed, InvalidReference
from modelyard.images.oci import (
    DOCKER_LAYER,
    DOCKER_LIST,
    INDEX,
    LAYER_GZIP,
    Descriptor,
    ImageLayout,
    Layer,
    canonical_json,
    open_layer,
    read_layer_files,
)
from modelyard.images.registry import ImageRef, Registry

if TYPE_CHECKING:
    from modelyard.images.engine import DockerEngine

_PYTHON = re.compile(r"^usr/(?:local/)?bin/python3\.(\d+)$")
_FILES = {"etc/passwd": 1 << 20, "etc/group": 1 << 20, "var/lib/dpkg/status": 64 << 20}


@dataclass(frozen=True)
class BaseImage:
    name: str  # as the user gave it
    digest: str | None  # the registry's manifest digest (None for a local image)
    config: dict[str, Any]
    layers: tuple[Layer, ...]
    python: str  # /usr/bin/python3.11
    python_minor: str  # 3.11
    passwd: str
    group: str
    debian: dict[str, str]


def load_base(
    name: str,
    layout: ImageLayout,
    *,
    engine: DockerEngine | None = None,
    username: str | None = None,
    password: str | None = None,
) -> BaseImage:
    """Resolve ``name`` (see the module docstring) and put its blobs into ``layout``."""
    try:
        ref: ImageRef | None = ImageRef.parse(name)
    except InvalidReference:  # no registry host in the name: a local image
        ref = None
    if ref is not None:
        digest, config, layers = _from_registry(ref, layout, username, password)
    else:
        digest, config, layers = None, *_from_engine(name, layout, engine)
    return _with_facts(name, digest, config, layers, layout)


def _from_registry(
    ref: ImageRef, layout: ImageLayout, username: str | None, password: str | None
) -> tuple[str, dict[str, Any], tuple[Layer, ...]]:
    reg = Registry(ref.host, username=username, password=password)
    data, media, digest = reg.get_manifest(ref.repository, ref.reference)
    manifest = json.loads(data)
    if media in (INDEX, DOCKER_LIST) or "manifests" in manifest:
        chosen = next(
            (
                m
                for m in manifest.get("manifests") or []
                if (m.get("platform") or {}).get("os") == "linux"
                and (m.get("platform") or {}).get("architecture") == "amd64"
            ),
            None,
        )
        if chosen is None:
            raise ImageBuildFailed(f"base image {ref} has no linux/amd64 image")
        data, media, digest = reg.get_manifest(ref.repository, chosen["digest"])
        manifest = json.loads(data)
    config_desc = Descriptor.from_json(manifest["config"])
    config_bytes = reg.get_blob_bytes(ref.repository, config_desc.digest)
    layout.put_bytes(config_bytes)
    config = json.loads(config_bytes)
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    descs = [Descriptor.from_json(d) for d in manifest.get("layers") or []]
    if len(diff_ids) != len(descs):
        raise ImageBuildFailed(f"base image {ref}: its config and manifest disagree on layers")
    layers = []
    for desc, diff_id in zip(descs, diff_ids, strict=True):
        if desc.media_type not in (LAYER_GZIP, DOCKER_LAYER):
            raise ImageBuildFailed(
                f"base image {ref}: layer {desc.digest} is {desc.media_type}; only gzip layers "
                "are supported"
            )
        if not layout.has(desc.digest):
            fh, tmp = layout.temp_file()
            try:
                with fh:
                    reg.get_blob(ref.repository, desc.digest, fh)
                layout.adopt(tmp, desc.digest)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
        size = _uncompressed_size(layout.blob_path(desc.digest))
        layers.append(Layer(Descriptor(LAYER_GZIP, desc.digest, desc.size), diff_id, size))
    return digest, config, tuple(layers)


def _from_engine(
    name: str, layout: ImageLayout, engine: DockerEngine | None
) -> tuple[dict[str, Any], tuple[Layer, ...]]:
    """``docker save`` of a local image: its config and its layers, gzipped reproducibly (a
    layer's gzip blob is cached by its diff_id, so the second build reads no archive)."""
    from modelyard.images.engine import DockerEngine

    engine = engine or DockerEngine.from_env()
    info = engine.inspect_image(name)
    if info is None:
        raise ImageBuildFailed(
            f"base image {name} is not in the engine at {engine.host}: name a registry image "
            "(HOST/REPO@sha256:...) to build without an engine, or build one with "
            "'modelyard base build'"
        )
    config_digest = str(info["Id"])
    known = layout.root / "bases" / f"{config_digest.split(':')[1]}.json"
    if known.is_file():
        saved = json.loads(known.read_text())
        layers = tuple(
            Layer(Descriptor.from_json(x["descriptor"]), x["diff_id"], x["size"])
            for x in saved["layers"]
        )
        if all(layout.has(layer.digest) for layer in layers):
            return layout.get_json(config_digest), layers
    with tempfile.TemporaryDirectory(prefix="modelyard-save-", dir=layout.root) as tmp:
        archive = Path(tmp) / "image.tar"
        with archive.open("wb") as out:
            proc = engine.run(["save", config_digest], check=False, timeout=900)
            out.write(proc.stdout)
        if proc.returncode != 0:
            raise ImageBuildFailed(
                f"docker save {name} failed: {proc.stderr.decode(errors='replace').strip()}"
            )
        with tarfile.open(archive) as tar:
            tar.extractall(Path(tmp) / "x", filter="data")
        root = Path(tmp) / "x"
        entry = json.loads((root / "manifest.json").read_text())[0]
        config_bytes = (root / entry["Config"]).read_bytes()
        config = json.loads(config_bytes)
        layout.put_bytes(config_bytes)
        diff_ids = list(config["rootfs"]["diff_ids"])
        layers = tuple(
            _compress_layer(root / rel, diff_id, layout)
            for rel, diff_id in zip(entry["Layers"], diff_ids, strict=True)
        )
    known.parent.mkdir(parents=True, exist_ok=True)
    known.write_text(
        json.dumps(
            {
                "layers": [
                    {
                        "descriptor": x.descriptor.to_json(),
                        "diff_id": x.diff_id,
                        "size": x.uncompressed_size,
                    }
                    for x in layers
                ]
            }
        )
    )
    return config, layers


def _compress_layer(path: Path, diff_id: str, layout: ImageLayout) -> Layer:
    raw, tmp = layout.temp_file()
    sha_gz, sha_tar, size_gz, size_tar = hashlib.sha256(), hashlib.sha256(), 0, 0
    try:
        with raw, open_layer(path) as src:

            class _Tee:
                def write(self, data: bytes) -> int:
                    nonlocal size_gz
                    sha_gz.update(data)
                    size_gz += len(data)
                    return raw.write(data)

                def flush(self) -> None:
                    raw.flush()

            with gzip.GzipFile(
                filename="",
                mode="wb",
                fileobj=_Tee(),
                compresslevel=6,
                mtime=0,
            ) as gz:
                for chunk in iter(lambda: src.read(1 << 20), b""):
                    sha_tar.update(chunk)
                    size_tar += len(chunk)
                    gz.write(chunk)
        if "sha256:" + sha_tar.hexdigest() != diff_id:
            raise ImageBuildFailed(f"a saved layer does not match its diff_id {diff_id}")
        digest = "sha256:" + sha_gz.hexdigest()
        layout.adopt(tmp, digest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return Layer(Descriptor(LAYER_GZIP, digest, size_gz), diff_id, size_tar)


def _uncompressed_size(blob: Path) -> int:
    size = 0
    with gzip.open(blob, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            size += len(chunk)
    return size


def _with_facts(
    name: str,
    digest: str | None,
    config: dict[str, Any],
    layers: tuple[Layer, ...],
    layout: ImageLayout,
) -> BaseImage:
    """The interpreter, user table and Debian packages of the base's merged file system
    (later layers win, whiteouts delete); cached per config digest."""
    config_digest = layout.put_bytes(canonical_json(config))
    cache = layout.root / "bases" / f"facts-{config_digest.split(':')[1]}.json"
    if cache.is_file():
        facts = json.loads(cache.read_text())
    else:
        files: dict[str, bytes | None] = {}
        pythons: dict[str, bool] = {}
        for layer in layers:
            found, names = _scan(layout.blob_path(layer.digest))
            files.update(found)
            pythons.update(names)
        candidates = sorted(p for p, present in pythons.items() if present)
        if not candidates:
            raise ImageBuildFailed(
                f"base image {name} has no python3.X in /usr/bin or /usr/local/bin"
            )
        python = "/" + candidates[-1]
        facts = {
            "python": python,
            "passwd": (files.get("etc/passwd") or b"").decode(),
            "group": (files.get("etc/group") or b"").decode(),
            "debian": _dpkg_status(files.get("var/lib/dpkg/status") or b""),
        }
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp")
        tmp.write_text(json.dumps(facts, sort_keys=True))
        tmp.replace(cache)
    python = str(facts["python"])
    match = _PYTHON.match(python.lstrip("/"))
    assert match is not None
    return BaseImage(
        name=name,
        digest=digest,
        config=config,
        layers=layers,
        python=python,
        python_minor=f"3.{match.group(1)}",
        passwd=str(facts["passwd"]),
        group=str(facts["group"]),
        debian=dict(facts["debian"]),
    )


def _scan(blob: Path) -> tuple[dict[str, bytes | None], dict[str, bool]]:
    found = read_layer_files(blob, _FILES)
    pythons: dict[str, bool] = {}
    with gzip.open(blob, "rb") as fh, tarfile.open(fileobj=fh, mode="r|") as tar:
        for info in tar:
            name = info.name.removeprefix("./").lstrip("/")
            head, _, base = name.rpartition("/")
            if base.startswith(".wh.") and _PYTHON.match(f"{head}/{base[4:]}"):
                pythons[f"{head}/{base[4:]}"] = False
            elif _PYTHON.match(name) and (info.isfile() or info.issym()):
                pythons[name] = True
    return found, pythons


def _dpkg_status(text: bytes) -> dict[str, str]:
    """``{package: version}`` of the packages dpkg's status file says are installed."""
    found: dict[str, str] = {}
    for stanza in text.decode(errors="replace").split("\n\n"):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            key, sep, value = line.partition(":")
            if sep and not line.startswith((" ", "\t")):
                fields[key] = value.strip()
        installed = fields.get("Status", "").endswith(" installed")
        if installed and fields.get("Package") and fields.get("Version"):
            found[fields["Package"]] = fields["Version"]
    return found


def remove_layout(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
