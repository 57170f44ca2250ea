"""``modelyard verify IMAGE_REF``: does the image in the registry hold what was registered?

Read from the registry alone (no engine): the manifest, the config and its labels, the layer
holding the model, and the SBOM pushed beside the image. Every blob is checked against its
digest as it arrives, every layer read against its ``diff_id``. Then, against the workspace's
registry of models:

- each ``io.modelyard.*`` label equals what the named version says now (model digest, run,
  datasets, signature, flavor);
- the model folder in the image holds exactly the registered files, each with its digest;
- the SBOM beside the image names the image as its subject and equals the one inside it and
  the one recorded by the build.

The result lists every check with its finding and the chain image → version → runs → datasets
(:mod:`modelyard.models.provenance`).
"""

from __future__ import annotations

import hashlib
import json
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard import image_contract as contract
from modelyard.errors import ModelyardError, NotFound

if TYPE_CHECKING:
    from modelyard.images.registry import Registry
    from modelyard.store.models_entities import ModelVersion
    from modelyard.workspace import Workspace

_MODEL_PREFIX = contract.MODEL_DIR.lstrip("/") + "/"
_SBOM = contract.SBOM_PATH.lstrip("/")
_MAX_FILE = 4 << 30


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str


@dataclass(frozen=True)
class Verification:
    image: str  # REPO@DIGEST
    version: ModelVersion | None
    checks: tuple[Check, ...]
    chain: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    @property
    def failures(self) -> tuple[Check, ...]:
        return tuple(c for c in self.checks if not c.ok)


def verify_image(
    ref: str,
    *,
    workspace: Workspace | None = None,
    username: str | None = None,
    password: str | None = None,
) -> Verification:
    from modelyard.images.registry import ImageRef, Registry
    from modelyard.workspace import resolve as resolve_workspace

    ws = resolve_workspace(workspace)
    image = ImageRef.parse(ref)
    reg = Registry(image.host, username=username, password=password)
    data, _media, digest = reg.get_manifest(image.repository, image.reference)
    pinned = f"{image.host}/{image.repository}@{digest}"
    manifest = json.loads(data)
    if "layers" not in manifest or "config" not in manifest:
        raise ModelyardError(f"{ref} is an index of images, not one image: name one by digest")
    checks: list[Check] = []
    config = _config(reg, image.repository, manifest, checks)
    if config is None:
        return Verification(pinned, None, tuple(checks), (f"image {pinned}",))
    labels = dict((config.get("config") or {}).get("Labels") or {})
    version = _version(ws, labels, checks)
    if version is None:
        return Verification(pinned, None, tuple(checks), (f"image {pinned}",))
    _check_labels(ws, version, labels, checks)
    in_image_sbom = _check_model_layer(ws, reg, image.repository, manifest, config, version, checks)
    _check_sbom(ws, reg, image.repository, digest, version, in_image_sbom, checks)
    return Verification(pinned, version, tuple(checks), _chain(ws, pinned, version))


def _config(
    reg: Registry, repo: str, manifest: dict[str, Any], checks: list[Check]
) -> dict[str, Any] | None:
    from modelyard.errors import RegistryError

    digest = str(manifest["config"]["digest"])
    try:
        config = json.loads(reg.get_blob_bytes(repo, digest))
    except RegistryError as exc:
        checks.append(Check("config", False, str(exc)))
        return None
    checks.append(Check("config", True, f"{digest} matches its digest"))
    return config if isinstance(config, dict) else None


def _version(ws: Workspace, labels: dict[str, str], checks: list[Check]) -> ModelVersion | None:
    name, number = labels.get("io.modelyard.model"), labels.get("io.modelyard.version")
    if not name or not (number or "").isdigit():
        checks.append(
            Check(
                "labels",
                False,
                "no io.modelyard.model / io.modelyard.version labels: not a modelyard model image",
            )
        )
        return None
    try:
        version = ws.store.models.get_version(name, int(number or "0"))
    except NotFound:
        checks.append(Check("version", False, f"{name}@{number} is not registered here"))
        return None
    checks.append(Check("version", True, f"labels name {version.ref}, registered"))
    return version


def _check_labels(
    ws: Workspace, version: ModelVersion, labels: dict[str, str], checks: list[Check]
) -> None:
    from modelyard.packaging.dockerfile import lineage_labels

    expected = lineage_labels(ws, version)
    bad = [
        f"{key} is {labels.get(key)!r}, registered {value!r}"
        for key, value in sorted(expected.items())
        if labels.get(key) != value
    ]
    if bad:
        checks.append(Check("labels", False, "; ".join(bad)))
    else:
        checks.append(Check("labels", True, f"{len(expected)} io.modelyard labels match"))


def _check_model_layer(
    ws: Workspace,
    reg: Registry,
    repo: str,
    manifest: dict[str, Any],
    config: dict[str, Any],
    version: ModelVersion,
    checks: list[Check],
) -> bytes | None:
    """Read layers from the last one back until one holds the model folder; compare its
    files with the version's registered folder. Returns the SBOM the image ships, if found."""
    from modelyard.errors import RegistryError

    layers = list(manifest.get("layers") or [])
    diff_ids = list((config.get("rootfs") or {}).get("diff_ids") or [])
    if len(layers) != len(diff_ids):
        checks.append(Check("model layer", False, "the config's diff_ids do not match the layers"))
        return None
    for index in range(len(layers) - 1, -1, -1):
        desc = layers[index]
        with tempfile.TemporaryDirectory(prefix="modelyard-verify-") as tmp:
            blob = Path(tmp) / "layer"
            try:
                with blob.open("wb") as fh:
                    reg.get_blob(repo, str(desc["digest"]), fh)
            except RegistryError as exc:
                checks.append(Check("model layer", False, f"layer {index}: {exc}"))
                return None
            files, sbom, diff_id = _read_layer(blob)
        if diff_id != diff_ids[index]:
            checks.append(
                Check(
                    "model layer",
                    False,
                    f"layer {index} ({desc['digest']}) "
                    f"unpacks to {diff_id}, the config says {diff_ids[index]}",
                )
            )
            return None
        if not files:
            continue
        expected = {e.path: e.digest for e in ws.artifacts.read_manifest(version.digest).entries}
        problems = [f"{p} missing" for p in sorted(set(expected) - set(files))]
        problems += [f"{p} not registered" for p in sorted(set(files) - set(expected))]
        problems += [
            f"{p} is {files[p][:19]}…, registered {expected[p][:19]}…"
            for p in sorted(set(files) & set(expected))
            if files[p] != expected[p]
        ]
        if problems:
            checks.append(
                Check(
                    "model layer",
                    False,
                    f"layer {index} does not hold "
                    f"{version.ref} ({version.digest}): " + "; ".join(problems),
                )
            )
        else:
            checks.append(
                Check(
                    "model layer",
                    True,
                    f"layer {index} holds the {len(files)} "
                    f"file(s) of {version.ref} ({version.digest})",
                )
            )
        return sbom
    checks.append(Check("model layer", False, f"no layer holds {contract.MODEL_DIR}"))
    return None


def _read_layer(blob: Path) -> tuple[dict[str, str], bytes | None, str]:
    """``({model file: sha256 digest}, shipped SBOM, diff_id)`` of one layer blob."""
    from modelyard.images.oci import open_layer

    files: dict[str, str] = {}
    sbom: bytes | None = None
    tar_hash = hashlib.sha256()

    class _Tee:
        def read(self, size: int = -1) -> bytes:
            chunk = raw.read(size)
            tar_hash.update(chunk)
            return chunk

    with open_layer(blob) as raw, tarfile.open(fileobj=_Tee(), mode="r|") as tar:  # type: ignore[call-overload]
        for info in tar:
            name = info.name.removeprefix("./").lstrip("/")
            if name.startswith(_MODEL_PREFIX) and info.isfile():
                if info.size > _MAX_FILE:
                    continue
                extracted = tar.extractfile(info)
                h = hashlib.sha256()
                if extracted is not None:
                    for chunk in iter(lambda: extracted.read(1 << 20), b""):  # noqa: B023
                        h.update(chunk)
                files[name[len(_MODEL_PREFIX) :]] = "sha256:" + h.hexdigest()
            elif name == _SBOM and info.isfile() and info.size < (64 << 20):
                extracted = tar.extractfile(info)
                sbom = extracted.read() if extracted is not None else None
        while chunk := raw.read(1 << 20):  # the tar's end padding counts in the diff_id too
            tar_hash.update(chunk)
    return files, sbom, "sha256:" + tar_hash.hexdigest()


def _check_sbom(
    ws: Workspace,
    reg: Registry,
    repo: str,
    digest: str,
    version: ModelVersion,
    in_image: bytes | None,
    checks: list[Check],
) -> None:
    from modelyard.errors import RegistryError
    from modelyard.packaging.oci_push import fetch_sbom, sbom_tag
    from modelyard.packaging.sbom import sbom_of

    try:
        found = fetch_sbom(reg, repo, digest)
    except RegistryError as exc:
        checks.append(Check("sbom", False, str(exc)))
        return
    if found is None:
        checks.append(
            Check(
                "sbom",
                False,
                f"no SBOM beside the image (neither a referrer nor the tag {sbom_tag(digest)})",
            )
        )
        return
    sbom, artifact, how = found
    problems = []
    try:
        component = json.loads(sbom)["metadata"]["component"]
        if (component.get("name"), component.get("version")) != (
            version.name,
            str(version.version),
        ):
            problems.append(f"it describes {component.get('name')}@{component.get('version')}")
    except (ValueError, KeyError, TypeError):
        problems.append("it is not a CycloneDX document")
    if in_image is not None and in_image != sbom:
        problems.append(f"it differs from {contract.SBOM_PATH} in the image")
    try:
        if sbom_of(version.ref, ws) != sbom:
            problems.append("it differs from the SBOM recorded by the build")
    except NotFound:
        problems.append("the build recorded no SBOM")
    if problems:
        checks.append(Check("sbom", False, f"{artifact} (found by {how}): " + "; ".join(problems)))
    else:
        checks.append(
            Check(
                "sbom",
                True,
                f"{artifact} (found by {how}) matches the image's and the recorded one",
            )
        )


def _chain(ws: Workspace, image: str, version: ModelVersion) -> tuple[str, ...]:
    from modelyard.models.provenance import provenance

    lines = [f"image {image}", f"└─ model {version.ref} ({version.flavor}, {version.digest})"]
    prov = provenance(ws, version)
    for i, run_id in enumerate(prov.runs):
        run = ws.store.runs.get(run_id)
        commit = f", commit {run.git_commit[:12]}" if run.git_commit else ""
        lines.append(f"{'   ' * (i + 1)}└─ run {run_id} ({run.name}{commit})")
    depth = len(prov.runs) + 1
    for name in sorted(prov.datasets):
        lines.append(f"{'   ' * depth}└─ dataset {prov.datasets[name]}")
    return tuple(lines)
