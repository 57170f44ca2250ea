"""Small helpers shared by the registry verbs: who is acting, and how they parse references.
A model folder's metadata file is read by :mod:`modelyard.tracking.model_folder`."""

from __future__ import annotations

from modelyard.refs import Ref
from modelyard.tracking.model_folder import MODEL_FILE

MODEL_ACTIVE = "active"  # the same values as modelyard.store.models_entities, kept here
MODEL_ARCHIVED = "archived"  # so importing the verbs does not import the store

__all__ = [
    "MODEL_ACTIVE",
    "MODEL_ARCHIVED",
    "MODEL_FILE",
    "actor",
    "parse_model_ref",
    "parse_version_ref",
]


def actor() -> str:
    """``user@host`` of whoever runs this process: recorded on every registry change."""
    from modelyard.tracking.environment import host_name, user_name

    return f"{user_name() or 'unknown'}@{host_name() or 'unknown'}"


def parse_model_ref(text: str) -> Ref:
    return Ref.parse(text, kind="model reference")


def parse_version_ref(text: str) -> tuple[str, int]:
    """``name@N`` only: commands that change one version take an exact number, so a moving
    alias can never make them change a different version than the user saw."""
    ref = parse_model_ref(text)
    if ref.version is None:
        from modelyard.errors import InvalidReference

        raise InvalidReference(f"{text!r} must name one version as NAME@NUMBER (e.g. {ref.name}@3)")
    return ref.name, ref.version
