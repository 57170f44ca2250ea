"""Bring a database to the schema this code knows, or refuse one that is newer.

Runs once when a store is opened. Concurrent first opens (eight processes starting together)
serialise on a lock: a file lock beside a SQLite database, an advisory lock on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import fcntl
from collections.abc import Iterator
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, text
from sqlalchemy.engine import Engine

from modelyard.errors import StoreVersionError

MIGRATIONS = Path(__file__).parent / "migrations"
_PG_LOCK_KEY = 0x6D6F64656C79  # "modely"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def check_version(engine: Engine) -> bool:
    """True when the database is at this code's head; raises if it is newer than the code."""
    script = ScriptDirectory.from_config(alembic_config())
    with engine.connect() as conn:
        current = current_revision(conn)
    if current is None:
        return False
    known = {rev.revision for rev in script.walk_revisions()}
    if current not in known:
        raise StoreVersionError(
            f"the metadata store is at schema revision {current}, newer than this modelyard "
            f"understands (its newest is {script.get_current_head()}); upgrade modelyard"
        )
    return current == script.get_current_head()


def upgrade(engine: Engine, sqlite_path: Path | None = None) -> None:
    """Upgrade to head unless already there; safe to call from many processes at once."""
    if check_version(engine):
        return
    with _lock(engine, sqlite_path):
        if check_version(engine):  # somebody else migrated while we waited
            return
        cfg = alembic_config()
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, "head")


@contextlib.contextmanager
def _lock(engine: Engine, sqlite_path: Path | None) -> Iterator[None]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": _PG_LOCK_KEY})
            conn.commit()
            try:
                yield
            finally:
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": _PG_LOCK_KEY})
                conn.commit()
        return
    if sqlite_path is None:
        yield
        return
    lock_path = sqlite_path.with_name(sqlite_path.name + ".migrate.lock")
    with lock_path.open("a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
