"""``modelyard push`` of an image the OCI builder wrote: blobs and manifest sent with the
distribution API (no Docker engine), then the SBOM beside it.

The manifest is PUT under ``:VERSION`` and ``:sha-<12 hex of the model digest>`` with the exact
bytes the build wrote, so the registry's digest is the build's. The SBOM goes up as an OCI
artifact (``artifactType`` ``application/vnd.cyclonedx+json``, an empty config, the SBOM as its
one layer) whose ``subject`` is the image: a registry with the referrers API lists it under the
image; every registry also gets it under the tag ``sha256-<hex of the image digest>.sbom`` (the
tag scheme cosign and oras use where the referrers API is missing), which is how readers find
it there. Both the image and its SBOM are recorded on the version.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelyard.errors import NotFound, RegistryError

if TYPE_CHECKING:
    from modelyard.images.oci import Descriptor, ImageLayout
    from modelyard.images.registry import Registry
    from modelyard.store.models_entities import ModelVersion
    from modelyard.workspace import Workspace

SBOM_MEDIA_TYPE = "application/vnd.cyclonedx+json"
SBOM_RELATION = "sbom_pushed_as"


@dataclass(frozen=True)
class OciPush:
    version: ModelVersion
    tags: tuple[str, ...]
    digest: str
    ref: str
    sbom: SbomPush


@dataclass(frozen=True)
class SbomPush:
    digest: str  # the SBOM artifact's manifest digest
    ref: str  # REPO@DIGEST
    tag: str  # sha256-<hex>.sbom
    referrers_api: bool  # whether the registry lists it as a referrer of the image


def sbom_tag(image_digest: str) -> str:
    """``sha256-<hex>.sbom``: where an image's SBOM is tagged beside it."""
    return image_digest.replace(":", "-") + ".sbom"


def oci_manifest_of(ws: Workspace, version: ModelVersion) -> Descriptor | None:
    """The manifest the OCI builder wrote for ``version``'s recorded image, if it did."""
    from modelyard.images.oci import ImageLayout
    from modelyard.packaging.oci_build import LAYOUT_DIR, layout_name

    root = ws.state_dir / LAYOUT_DIR
    if version.image_id is None or not (root / "index.json").is_file():
        return None
    layout = ImageLayout(root)
    found = layout.find(layout_name(version))
    if found is None or not layout.has(found.digest):
        return None
    manifest = layout.get_json(found.digest)
    return found if (manifest.get("config") or {}).get("digest") == version.image_id else None


def push_oci_image(
    ws: Workspace,
    version: ModelVersion,
    manifest: Descriptor,
    repo: str,
    *,
    username: str | None = None,
    password: str | None = None,
    attempts: int = 4,
    backoff_s: float = 1.0,
    sleep: Callable[[float], None] = time.sleep,
) -> OciPush:
    from modelyard.images.oci import ImageLayout
    from modelyard.images.registry import Registry
    from modelyard.packaging.lineage import record_push
    from modelyard.packaging.oci_build import LAYOUT_DIR
    from modelyard.packaging.sbom import sbom_of

    layout = ImageLayout(ws.state_dir / LAYOUT_DIR)
    host, _, path = repo.partition("/")
    reg = Registry(host, username=username, password=password)
    tags = (f"{repo}:{version.version}", f"{repo}:sha-{version.digest.split(':')[-1][:12]}")
    data = layout.get_bytes(manifest.digest)
    last: RegistryError | None = None
    for attempt in range(1, max(1, attempts) + 1):
        try:
            _upload(reg, layout, path, data)
            for tag in tags:
                reg.put_manifest(path, tag.rsplit(":", 1)[1], data, manifest.media_type)
            back, _, digest = reg.get_manifest(path, manifest.digest)
            if back != data:
                raise RegistryError(f"registry {host} returned other bytes for {manifest.digest}")
            break
        except RegistryError as exc:
            if not _transient(exc) or attempt == attempts:
                raise RegistryError(
                    f"could not push {tags[0]}: {exc}; nothing was recorded"
                ) from exc
            last = exc
            sleep(backoff_s * 2 ** (attempt - 1))
    else:  # pragma: no cover - the loop breaks or raises
        raise RegistryError(str(last))
    created = _created(layout, data)
    sbom = push_sbom(reg, path, manifest, sbom_of(version.ref, ws), created)
    remote = record_push(ws, version, repo, digest)
    ws.store.lineage.add("image", remote, "image", f"{repo}@{sbom.digest}", SBOM_RELATION)
    return OciPush(
        ws.store.models.get_version(version.name, version.version), tags, digest, remote, sbom
    )


def push_sbom_beside(
    ws: Workspace,
    version: ModelVersion,
    repo: str,
    digest: str,
    *,
    username: str | None = None,
    password: str | None = None,
) -> SbomPush | None:
    """Push the SBOM the build recorded beside the image ``REPO@DIGEST`` a Docker push made,
    and record it; None when the build recorded none (an image built before SBOMs)."""
    from modelyard.images.oci import Descriptor
    from modelyard.images.registry import Registry
    from modelyard.packaging.sbom import sbom_of

    try:
        sbom = sbom_of(version.ref, ws)
    except NotFound:
        return None
    host, _, path = repo.partition("/")
    reg = Registry(host, username=username, password=password)
    data, media, _ = reg.get_manifest(path, digest)
    created = json.loads(data).get("annotations", {}).get("org.opencontainers.image.created")
    pushed = push_sbom(reg, path, Descriptor(media, digest, len(data)), sbom, created)
    remote = f"{repo}@{digest}"
    ws.store.lineage.add("image", remote, "image", f"{repo}@{pushed.digest}", SBOM_RELATION)
    return pushed


def _transient(exc: RegistryError) -> bool:
    text = str(exc)
    return "does not answer" in text or " answered 5" in text


def _created(layout: ImageLayout, manifest: bytes) -> str | None:
    annotations = json.loads(manifest).get("annotations") or {}
    value = annotations.get("org.opencontainers.image.created")
    return str(value) if value else None


def _upload(reg: Registry, layout: ImageLayout, repo: str, manifest: bytes) -> None:
    doc = json.loads(manifest)
    blobs = [doc["config"], *doc.get("layers", [])]
    for blob in blobs:
        digest = str(blob["digest"])
        if reg.blob_exists(repo, digest):
            continue
        reg.put_blob(repo, digest, layout.verify_file(digest))


def push_sbom(
    reg: Registry, repo: str, subject: Descriptor, sbom: bytes, created: str | None
) -> SbomPush:
    """Push ``sbom`` as an artifact whose subject is ``subject`` (see the module docstring)."""
    from modelyard.images.oci import EMPTY, EMPTY_JSON, MANIFEST, canonical_json, sha256_digest

    sbom_digest = sha256_digest(sbom)
    empty_digest = sha256_digest(EMPTY_JSON)
    reg.put_blob(repo, empty_digest, EMPTY_JSON)
    reg.put_blob(repo, sbom_digest, sbom)
    annotations = {"org.opencontainers.image.created": created} if created else {}
    doc = {
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "artifactType": SBOM_MEDIA_TYPE,
        "config": {"mediaType": EMPTY, "digest": empty_digest, "size": len(EMPTY_JSON)},
        "layers": [
            {
                "mediaType": SBOM_MEDIA_TYPE,
                "digest": sbom_digest,
                "size": len(sbom),
                "annotations": {"org.opencontainers.image.title": "sbom.cdx.json"},
            }
        ],
        "subject": {
            "mediaType": subject.media_type,
            "digest": subject.digest,
            "size": subject.size,
        },
        **({"annotations": annotations} if annotations else {}),
    }
    data = canonical_json(doc)
    digest = sha256_digest(data)
    resp = reg.put_manifest(repo, digest, data, MANIFEST)
    subject_header = next((v for k, v in resp.headers.items() if k.lower() == "oci-subject"), None)
    referrers_api = subject_header == subject.digest
    if not referrers_api:
        listed = reg.referrers(repo, subject.digest)
        referrers_api = listed is not None and any(m.get("digest") == digest for m in listed)
    tag = sbom_tag(subject.digest)
    reg.put_manifest(repo, tag, data, MANIFEST)
    return SbomPush(digest, f"{repo}@{digest}", tag, referrers_api)


def fetch_sbom(reg: Registry, repo: str, image_digest: str) -> tuple[bytes, str, str] | None:
    """``(sbom, artifact manifest digest, how it was found)`` for an image, or None: through
    the referrers API when the registry has it, else the ``sha256-<hex>.sbom`` tag. The
    artifact must name the image as its subject."""
    candidates: list[tuple[str, str]] = []
    listed = reg.referrers(repo, image_digest)
    if listed is not None:
        candidates += [
            (str(m["digest"]), "referrers API")
            for m in listed
            if m.get("artifactType") == SBOM_MEDIA_TYPE and m.get("digest")
        ]
    if reg.manifest_exists(repo, sbom_tag(image_digest)):
        candidates.append((sbom_tag(image_digest), f"tag {sbom_tag(image_digest)}"))
    for reference, how in candidates:
        data, _, digest = reg.get_manifest(repo, reference)
        doc = json.loads(data)
        if (doc.get("subject") or {}).get("digest") != image_digest:
            continue
        layers = [x for x in doc.get("layers") or [] if x.get("mediaType") == SBOM_MEDIA_TYPE]
        if not layers:
            continue
        return reg.get_blob_bytes(repo, str(layers[0]["digest"])), digest, how
    return None


def require_oci_image(ws: Workspace, version: ModelVersion) -> Descriptor:
    found = oci_manifest_of(ws, version)
    if found is None:
        raise NotFound(
            f"{version.ref} has no OCI image in {ws.state_dir}; build it first: "
            f"modelyard build {version.ref} --builder oci"
        )
    return found
