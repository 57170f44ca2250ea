"""Container images, built offline: a base image from Debian packages, a wheelhouse prepared on
the host, and a build context laid out base → dependencies → modelyard runtime → payload.

Pipeline step images and model images are both made with this module; it knows nothing of
either — it builds "a base + exact wheel requirements + payload files + an entrypoint + labels".
Everything talks to the Docker engine through the ``docker`` command line (see ``engine``).
"""

from __future__ import annotations

from modelyard.images.base import DEFAULT_BASE_TAG, apt_sources, build_base_image
from modelyard.images.build import ImageInfo, build_image, build_image_from_spec, image_info
from modelyard.images.context import (
    DEFAULT_BASE_IMAGE,
    BuildContext,
    Healthcheck,
    ImageSpec,
    oci_labels,
    render_dockerfile,
    write_context,
)
from modelyard.images.engine import DEFAULT_SOCKET, DockerEngine
from modelyard.images.wheelhouse import (
    Wheelhouse,
    build_modelyard_wheel,
    default_wheelhouse_dir,
    lock_from_environment,
    prepare_wheelhouse,
)

__all__ = [
    "DEFAULT_BASE_IMAGE",
    "DEFAULT_BASE_TAG",
    "DEFAULT_SOCKET",
    "BuildContext",
    "DockerEngine",
    "Healthcheck",
    "ImageInfo",
    "ImageSpec",
    "Wheelhouse",
    "apt_sources",
    "build_base_image",
    "build_image",
    "build_image_from_spec",
    "build_modelyard_wheel",
    "default_wheelhouse_dir",
    "image_info",
    "lock_from_environment",
    "oci_labels",
    "prepare_wheelhouse",
    "render_dockerfile",
    "write_context",
]
