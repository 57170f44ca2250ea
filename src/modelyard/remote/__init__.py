"""Talk to a modelyard team server: the metadata store and the artifact store over HTTP.

With ``MODELYARD_URL`` (and ``MODELYARD_TOKEN``) set, :class:`modelyard.workspace.Workspace`
hands out a :class:`RemoteStore` and a :class:`RemoteArtifactStore`, and every library call
works against the server unchanged.
"""

from __future__ import annotations

from modelyard.remote.artifacts import RemoteArtifactStore
from modelyard.remote.client import RemoteClient
from modelyard.remote.store import RemoteStore

__all__ = ["RemoteArtifactStore", "RemoteClient", "RemoteStore"]
