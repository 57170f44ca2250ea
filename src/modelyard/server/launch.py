"""Starting the team server safely: refuse an open network bind without auth, and hand out
the first admin token exactly once."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from modelyard.errors import UsageError
from modelyard.workspace import Workspace

INITIAL_ADMIN_NAME = "initial-admin"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a host name could resolve anywhere: treat it as the network


def check_bind(host: str, *, no_auth: bool, insecure_no_auth: bool) -> bool:
    """Whether to authenticate. Without auth, only loopback unless asked in so many words."""
    if insecure_no_auth:
        return False
    if no_auth:
        if not is_loopback(host):
            raise UsageError(
                f"refusing to serve {host} without authentication: anyone on the network could "
                "read and change the workspace; drop --no-auth, or pass --insecure-no-auth "
                "if you really mean it"
            )
        return False
    return True


@dataclass(frozen=True)
class Bootstrap:
    token: str | None  # the one-time admin secret, when one was just created


def bootstrap_admin(ws: Workspace) -> Bootstrap:
    """Create an admin token when no active one exists, and return its secret (shown once)."""
    tokens = ws.store.tokens
    if tokens.has_active_admin():
        return Bootstrap(None)
    _, secret = tokens.create(INITIAL_ADMIN_NAME, "admin", created_by="modelyard server")
    return Bootstrap(secret)


def collect_stale_uploads(ws: Workspace) -> int:
    """At start: remove upload parts nothing appended to for a day (an upload resumes within
    that time); ``modelyard gc`` does the same on demand. Returns how many were removed."""
    from modelyard.artifacts import LocalArtifactStore
    from modelyard.artifacts.gc import collect_stale_parts

    artifacts = ws.artifacts
    if not isinstance(artifacts, LocalArtifactStore) or artifacts.read_only:
        return 0  # a client's cache (MODELYARD_URL) holds no upload parts
    count, _ = collect_stale_parts(artifacts.root)
    return count
