"""The engine and its sessions, shared by the repositories of one Store."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from modelyard.errors import ModelyardError, NotFound, StoreError

T = TypeVar("T")


class Database:
    """An engine and its sessions, shared by the repositories of one :class:`Store`."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._sessions = sessionmaker(engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session inside one transaction, committed on success, rolled back on error."""
        with self._sessions() as session, session.begin():
            yield session

    def retrying(self, what: str, fn: Callable[[Session], T], attempts: int = 20) -> T:
        """Run ``fn`` in a transaction, again when a unique constraint shows that a concurrent
        writer got there first (the loser re-reads and tries again). Any other integrity error
        is the caller's: a broken foreign key is NotFound, not contention."""
        from sqlalchemy.exc import IntegrityError

        for _ in range(attempts):
            try:
                with self.session() as s:
                    return fn(s)
            except IntegrityError as exc:
                if not is_unique_violation(exc):
                    raise integrity_error(exc) from None
        raise StoreError(f"could not {what}: too much contention")

    def insert(self, table: Any) -> Any:
        """A dialect insert that supports ``on_conflict_do_*`` on both backends."""
        if self.dialect == "postgresql":
            return postgresql.insert(table)
        return sqlite.insert(table)


def is_unique_violation(exc: BaseException) -> bool:
    """True for a unique-constraint race (worth retrying); False for a broken foreign key and
    every other integrity error (retrying cannot help)."""
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) == "23505":  # PostgreSQL unique_violation
        return True
    return "UNIQUE constraint failed" in str(orig)


def integrity_error(exc: BaseException) -> ModelyardError:
    """The user-facing error for an integrity failure that is not a retryable race."""
    orig = getattr(exc, "orig", None)
    if getattr(orig, "sqlstate", None) == "23503" or "FOREIGN KEY constraint failed" in str(orig):
        return NotFound("a record this refers to does not exist (e.g. an unknown run id)")
    return StoreError("the store refused the change (a required value is missing or invalid)")
