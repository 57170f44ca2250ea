"""The metadata store: an engine, its migrations, and the repositories over it."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from modelyard.errors import ModelyardError, NotFound, StoreError, StoreUnavailable
from modelyard.store import migrate
from modelyard.store.engine import make_engine, redact

if TYPE_CHECKING:
    from modelyard.store.protocols import (
        DatasetStore,
        DeploymentStore,
        LineageStore,
        ModelStore,
        MonitoringStore,
        PipelineStore,
        RunStore,
        TokenStore,
    )

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


class Store:
    """The metadata of one workspace. Build it with :meth:`open`; the constructor does no I/O.

    A :class:`~modelyard.store.protocols.MetadataStore`: each repository is annotated with its
    protocol, so ``mypy --strict`` holds it to the contract the remote client also keeps."""

    def __init__(self, db: Database, url: str) -> None:
        from modelyard.store.data import DatasetRepository
        from modelyard.store.deploy import DeploymentRepository
        from modelyard.store.models import ModelRepository
        from modelyard.store.monitor import MonitoringRepository
        from modelyard.store.pipeline import PipelineRepository
        from modelyard.store.server import TokenRepository
        from modelyard.store.tracking import RunRepository
        from modelyard.store.tracking_lineage import LineageRepository

        self.db = db
        self.url = url
        self.datasets: DatasetStore = DatasetRepository(db)
        self.runs: RunStore = RunRepository(db)
        self.lineage: LineageStore = LineageRepository(db)
        self.pipelines: PipelineStore = PipelineRepository(db)
        self.models: ModelStore = ModelRepository(db)
        self.tokens: TokenStore = TokenRepository(db)
        self.monitoring: MonitoringStore = MonitoringRepository(db)
        self.deployments: DeploymentStore = DeploymentRepository(db)

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect, upgrade the schema if it is older than this code, refuse it if newer."""
        engine = make_engine(url)
        sqlite_path = _sqlite_path(url)
        if sqlite_path is not None and not sqlite_path.parent.is_dir():
            raise StoreUnavailable(
                f"cannot open the store {redact(url)}: folder {sqlite_path.parent} does not exist"
            )
        try:
            with engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            migrate.upgrade(engine, sqlite_path)
        except DBAPIError as exc:  # cannot connect, or not a database at all
            engine.dispose()
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            raise StoreUnavailable(f"cannot connect to the store {redact(url)}: {reason}") from None
        except BaseException:
            engine.dispose()
            raise
        return cls(Database(engine), url)

    def close(self) -> None:
        self.db.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({redact(self.url)!r})"


def _sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    return Path(parsed.database)
