"""API tokens of the team server: created random, stored hashed, expiring and revocable.

The secret is shown once, at creation; the store keeps only its SHA-256, so neither a database
dump nor a log line of the table can be replayed as a credential.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import datetime, timedelta

from sqlalchemy import or_, select, update

from modelyard.errors import InvalidParameter, NotFound
from modelyard.store.database import Database
from modelyard.store.schema import utcnow
from modelyard.store.server_entities import TOKEN_ROLES, ApiToken
from modelyard.store.server_schema import ApiTokenRow

TOKEN_PREFIX = "myd_"
# Touching last_used_at on every request would turn each read into a write; once a minute is
# enough to tell live tokens from forgotten ones.
_LAST_USED_RESOLUTION = timedelta(minutes=1)


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def _token(row: ApiTokenRow) -> ApiToken:
    return ApiToken(
        id=row.id,
        name=row.name,
        role=row.role,
        created_at=row.created_at,
        created_by=row.created_by,
        expires_at=row.expires_at,
        revoked_at=row.revoked_at,
        last_used_at=row.last_used_at,
    )


class TokenRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    def create(
        self,
        name: str,
        role: str,
        *,
        expires_at: datetime | None = None,
        created_by: str | None = None,
    ) -> tuple[ApiToken, str]:
        """A new token and its secret (returned once, never stored)."""
        if role not in TOKEN_ROLES:
            raise InvalidParameter(f"unknown role {role!r}; choose one of {', '.join(TOKEN_ROLES)}")
        name = name.strip()
        if not name or len(name) > 128:
            raise InvalidParameter("a token name must be 1 to 128 characters")
        if expires_at is not None and expires_at.tzinfo is None:
            raise InvalidParameter("expires_at must be timezone-aware")
        secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
        row = ApiTokenRow(
            id=secrets.token_hex(8),
            name=name,
            role=role,
            token_hash=hash_token(secret),
            created_at=utcnow(),
            created_by=created_by,
            expires_at=expires_at,
        )
        with self.db.session() as session:
            session.add(row)
            session.flush()
            return _token(row), secret

    def authenticate(self, secret: str) -> ApiToken | None:
        """The active token with this secret, or None (unknown, expired or revoked alike)."""
        if not secret.startswith(TOKEN_PREFIX) or len(secret) > 256:
            return None
        now = utcnow()
        with self.db.session() as session:
            row = session.scalars(
                select(ApiTokenRow).where(ApiTokenRow.token_hash == hash_token(secret))
            ).one_or_none()
            if row is None or _token(row).state(now) != "active":
                return None
            if row.last_used_at is None or now - row.last_used_at > _LAST_USED_RESOLUTION:
                row.last_used_at = now
            return _token(row)

    def list(self, *, include_inactive: bool = True) -> list[ApiToken]:
        with self.db.session() as session:
            query = select(ApiTokenRow).order_by(ApiTokenRow.created_at, ApiTokenRow.id)
            if not include_inactive:
                query = query.where(
                    ApiTokenRow.revoked_at.is_(None),
                    or_(ApiTokenRow.expires_at.is_(None), ApiTokenRow.expires_at > utcnow()),
                )
            return [_token(r) for r in session.scalars(query)]

    def get(self, token_id: str) -> ApiToken:
        with self.db.session() as session:
            row = session.get(ApiTokenRow, token_id)
            if row is None:
                raise NotFound(f"no API token with id {token_id!r}")
            return _token(row)

    def revoke(self, token_id: str) -> ApiToken:
        """Revoke a token (idempotent); later requests with it get 401."""
        with self.db.session() as session:
            session.execute(
                update(ApiTokenRow)
                .where(ApiTokenRow.id == token_id, ApiTokenRow.revoked_at.is_(None))
                .values(revoked_at=utcnow())
            )
        return self.get(token_id)

    def has_active_admin(self) -> bool:
        return any(t.role == "admin" for t in self.list(include_inactive=False))
