"""Values of the server stage that leave the store: API tokens' metadata, never a secret."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

TOKEN_ROLES = ("read", "write", "admin", "predict")


@dataclass(frozen=True)
class ApiToken:
    """A token's metadata; never its secret."""

    id: str
    name: str
    role: str
    created_at: datetime
    created_by: str | None
    expires_at: datetime | None
    revoked_at: datetime | None
    last_used_at: datetime | None

    def state(self, now: datetime) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"
