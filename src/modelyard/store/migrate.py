"""Bring a database to the schema this code knows, or refuse one that is newer.

Runs once when a store is opened. Concurrent first opens (eight processes starting together)
serialise on a lock: a file lock beside a SQLite database, an advisory lock on PostgreSQL.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Connection, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from modelyard.errors import StoreVersionError

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
_PG_LOCK_KEY = 0x6D6F64656C79  # "modely"


def alembic_config() -> Config:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


def check_version(engine: Engine) -> bool:
    """True when the database is at this code's head; raises if it is newer than the code.

    The common case, a database already at head, is answered without importing Alembic (a
    tenth of a second of every command): one query against the head read from the files."""
    head = _head_from_files()
    if head is not None:
        try:
            with engine.connect() as conn:
                current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except DBAPIError:
            current = None  # no such table yet: Alembic decides below
        if current == head:
            return True
    from alembic.script import ScriptDirectory

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


_REVISION = re.compile(r'^(down_revision|revision) = (None|"([^"]+)")', re.MULTILINE)


@functools.cache
def _head_from_files() -> str | None:
    """The one revision no other revision follows, read from the migration files; None when
    the files do not say it plainly (then Alembic reads them)."""
    revisions: set[str] = set()
    parents: set[str] = set()
    for path in (MIGRATIONS / "versions").glob("*.py"):
        found = dict((m.group(1), m.group(3)) for m in _REVISION.finditer(path.read_text()))
        if path.name == "__init__.py":
            continue
        if "revision" not in found or not found["revision"]:
            return None
        revisions.add(found["revision"])
        if found.get("down_revision"):
            parents.add(str(found["down_revision"]))
    heads = revisions - parents
    return heads.pop() if len(heads) == 1 else None


def upgrade(engine: Engine, sqlite_path: Path | None = None) -> None:
    """Upgrade to head unless already there; safe to call from many processes at once."""
    if check_version(engine):
        return
    with _lock(engine, sqlite_path):
        if check_version(engine):  # somebody else migrated while we waited
            return
        from alembic import command

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
