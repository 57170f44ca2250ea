"""The team server: REST API, authentication and the dashboard (``pip install
modelyard[server]``)."""

from __future__ import annotations

from modelyard.server.app import create_app
from modelyard.server.auth import AuthConfig, Principal, public, require
from modelyard.server.limits import ServerLimits

__all__ = ["AuthConfig", "Principal", "ServerLimits", "create_app", "public", "require"]
