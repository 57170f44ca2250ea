"""CycloneDX SBOMs of model images: every locked Python package with its version and the
sha256 of the wheel installed, and every Debian package of the base image.

Made with ``cyclonedx-python-lib`` (the ``sbom`` extra), never by hand. The SBOM is stored in
the artifact store and recorded with a ``model_version -has_sbom-> artifact`` lineage arrow,
and shipped in the image at :data:`modelyard.image_contract.SBOM_PATH`. Its serial number
and timestamp come from the version, so the same version, lock and base give the same bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.errors import ImageBuildFailed, NotFound

if TYPE_CHECKING:
    from modelyard.images import DockerEngine
    from modelyard.store.models_entities import ModelVersion
    from modelyard.workspace import Workspace

RELATION = "has_sbom"
_DPKG_FORMAT = "${Package} ${Version}\\n"


def debian_packages(engine: DockerEngine, base_image: str) -> dict[str, str]:
    """``{package: version}`` of the Debian packages installed in ``base_image``."""
    proc = engine.run(
        ["run", "--rm", "--network", "none", "--entrypoint", "dpkg-query", base_image,
         "-W", "-f", _DPKG_FORMAT],
        check=False,
        timeout=120,
    )  # fmt: skip
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        raise ImageBuildFailed(
            f"cannot list the Debian packages of {base_image}: "
            f"{lines[-1] if lines else f'exit {proc.returncode}'}"
        )
    found: dict[str, str] = {}
    for line in proc.stdout.decode(errors="replace").splitlines():
        name, _, version = line.strip().partition(" ")
        if name and version:
            found[name] = version
    return found


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def make_sbom(
    version: ModelVersion,
    wheels: Mapping[str, tuple[str, Path]],
    debian: Mapping[str, str],
    *,
    base_image: str,
) -> bytes:
    """CycloneDX 1.6 JSON for ``version``: ``wheels`` maps a package to (version, wheel file)."""
    import uuid

    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    bom = Bom(serial_number=uuid.uuid5(uuid.NAMESPACE_URL, f"modelyard:{version.ref}"))
    bom.metadata.timestamp = version.created_at
    root = bom.metadata.component = Component(
        name=version.name,
        version=str(version.version),
        type=ComponentType.MACHINE_LEARNING_MODEL,
        bom_ref=version.ref,
        properties=[Property(name="modelyard:base_image", value=base_image)],
    )
    for name in sorted(wheels):
        pkg_version, wheel = wheels[name]
        bom.components.add(
            Component(
                name=name,
                version=pkg_version,
                type=ComponentType.LIBRARY,
                bom_ref=f"pypi:{name}@{pkg_version}",
                purl=PackageURL("pypi", name=name, version=pkg_version),
                hashes=[HashType(alg=HashAlgorithm.SHA_256, content=sha256_file(wheel))],
                properties=[Property(name="modelyard:wheel", value=wheel.name)],
            )
        )
    for name in sorted(debian):
        bom.components.add(
            Component(
                name=name,
                version=debian[name],
                type=ComponentType.LIBRARY,
                bom_ref=f"deb:{name}@{debian[name]}",
                purl=PackageURL("deb", namespace="debian", name=name, version=debian[name]),
            )
        )
    # The image holds every component: the root depends on each, so the graph is complete.
    bom.register_dependency(root, list(bom.components))
    return JsonV1Dot6(bom).output_as_string(indent=2).encode()


def record_sbom(ws: Workspace, version: ModelVersion, data: bytes) -> str:
    """Store ``data`` and point the version at it; returns the artifact digest."""
    digest = ws.artifacts.put_bytes(data)
    ws.store.lineage.add("model_version", version.ref, "artifact", digest, RELATION)
    return digest


def sbom_of(ref: str, workspace: Workspace | None = None) -> bytes:
    """The SBOM recorded for model version ``ref`` by its latest ``modelyard build``."""
    from modelyard.models import resolve
    from modelyard.workspace import resolve as resolve_workspace

    ws = resolve_workspace(workspace)
    version = resolve(ref, ws)
    edges = [
        e
        for e in ws.store.lineage.edges_from("model_version", version.ref)
        if e.relation == RELATION
    ]
    if not edges:
        raise NotFound(f"{version.ref} has no SBOM yet: build its image with 'modelyard build'")
    latest = max(edges, key=lambda e: e.created_at)
    return ws.artifacts.get_bytes(latest.target_id)
