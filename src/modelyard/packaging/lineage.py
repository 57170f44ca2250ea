"""The ``image`` node type for lineage (ids: image id ``sha256:…``, or ``REPO@sha256:…`` for a
pushed copy). Images are found through the model versions that record them."""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelyard.units import format_size

if TYPE_CHECKING:
    from modelyard.store.models_entities import ModelVersion
    from modelyard.tracking.lineage import NodeType
    from modelyard.workspace import Workspace


def record_push(ws: Workspace, version: ModelVersion, repo: str, digest: str) -> str:
    """Record ``REPO@DIGEST`` as where ``version``'s image was pushed; returns that ref."""
    remote = f"{repo}@{digest}"
    ws.store.models.set_image(
        version.name,
        version.version,
        image_id=version.image_id,
        image_digest=digest,
        image_size=version.image_size,
        image_ref=remote,
    )
    if version.image_id is not None:
        ws.store.lineage.add("image", version.image_id, "image", remote, "pushed_as")
    return remote


def _label(ws: Workspace, node_id: str) -> str:
    if "@" in node_id:
        return f"image {node_id}"
    for edge in ws.store.lineage.edges_to("image", node_id):
        if edge.source_type != "model_version":
            continue
        name, _, number = edge.source_id.partition("@")
        try:
            version = ws.store.models.get_version(name, int(number))
        except Exception:  # a removed version: the id alone still says what it was
            break
        if version.image_id == node_id:
            size = f", {format_size(version.image_size)}" if version.image_size else ""
            digest = f", {version.image_digest}" if version.image_digest else ""
            return f"image {version.image_ref or ''} {node_id[:19]}{size}{digest}".replace(
                "  ", " "
            )
    return f"image {node_id[:19]}"


def _resolve(ws: Workspace, text: str) -> str | None:
    """``image:ID`` (explicit type) names an image; a bare ``sha256:…`` stays an artifact's,
    so only ids some version recorded are claimed."""
    value = text.strip()
    if not value.startswith("sha256:") and "@sha256:" not in value:
        return None
    return value if ws.store.lineage.edges_touching("image", value) else None


def image_node() -> NodeType:
    from modelyard.tracking.lineage import NodeType

    return NodeType("image", "image", _label, _resolve)
