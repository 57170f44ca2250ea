"""The metadata store: an engine, its migrations, and the repositories over it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from modelyard.errors import StoreUnavailable
from modelyard.store import migrate
from modelyard.store.database import Database
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
