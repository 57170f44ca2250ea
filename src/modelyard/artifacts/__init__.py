"""Content-addressed artifact storage."""

from modelyard.artifacts.base import ArtifactStore
from modelyard.artifacts.local import LocalArtifactStore
from modelyard.artifacts.manifest import Manifest, ManifestEntry

__all__ = ["ArtifactStore", "LocalArtifactStore", "Manifest", "ManifestEntry"]
