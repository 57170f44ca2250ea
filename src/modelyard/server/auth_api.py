"""``POST /api/v1/auth/check``: lets other services accept the team server's tokens.

A model server started with ``--auth-url`` does not read the token table (it must not import
the store); it asks here, presenting the caller's token as its own Bearer credential, and
caches the answer briefly. Asking the team server keeps expiry and revocation in one place.

The route requires ``predict`` like any route requires its permission, so the status alone
says what a model server needs: 401 for a missing, unknown, expired or revoked token, 403 for a
valid token whose role does not grant ``predict``, 200 otherwise. It is a POST so that no proxy
or browser caches an answer about a credential.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel
from starlette.requests import Request

from modelyard.server.auth import ROLE_GRANTS, Principal, require

if TYPE_CHECKING:
    from fastapi import APIRouter

AUTH_PREFIX = "/auth"


class TokenCheck(BaseModel):
    """Who the presented token is, and for how long its answer may be cached."""

    name: str
    role: str
    permissions: list[str]
    auth: bool  # False: this server authenticates no one, so it vouches for no token
    expires_in_s: float | None  # seconds until the token expires; None if it never does


def router() -> APIRouter:
    from fastapi import APIRouter

    api = APIRouter(prefix=AUTH_PREFIX, tags=["auth"])

    @api.post("/check", dependencies=[require("predict")], response_model=TokenCheck)
    def check(request: Request) -> TokenCheck:
        """Requires the `predict` permission. Who the Bearer token belongs to and what its role
        grants; a model server calls this to accept the team server's tokens."""
        principal: Principal = request.state.principal
        expires_in = None
        if principal.token_id is not None:
            token = request.app.state.workspace.store.tokens.get(principal.token_id)
            if token.expires_at is not None:  # the store returns aware UTC datetimes
                expires_in = max(0.0, (token.expires_at - datetime.now(UTC)).total_seconds())
        return TokenCheck(
            name=principal.name,
            role=principal.role,
            permissions=sorted(ROLE_GRANTS[principal.role]),
            auth=request.app.state.auth is not None,
            expires_in_s=expires_in,
        )

    return api
