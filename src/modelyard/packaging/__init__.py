"""Model images: a registered version becomes an OCI image (built offline, labelled with its
lineage, recorded on the version) and is pushed to a container registry."""

from modelyard.packaging.build import ModelImage, build_model_image
from modelyard.packaging.dockerfile import (
    DEFAULT_BASE_IMAGE,
    MODEL_DIR,
    SERVE_PORT,
    ModelImagePlan,
    default_base_image,
    image_repository,
    plan_model_image,
    serving_lock,
    write_model_context,
)
from modelyard.packaging.push import PushResult, push_model_image, registry_repository

__all__ = [
    "DEFAULT_BASE_IMAGE",
    "MODEL_DIR",
    "SERVE_PORT",
    "ModelImage",
    "ModelImagePlan",
    "PushResult",
    "build_model_image",
    "default_base_image",
    "image_repository",
    "plan_model_image",
    "push_model_image",
    "registry_repository",
    "serving_lock",
    "write_model_context",
]
