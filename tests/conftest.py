"""Shared fixtures. Store-backed tests take ``workspace`` and run once on SQLite and once on
PostgreSQL, each PostgreSQL test in a schema of its own. Without a PostgreSQL server those
variants skip with the reason; under CI (CI=true) they fail instead."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelyard.workspace import Workspace

PG_ADMIN_URL = os.environ.get(
    "MODELYARD_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def require_service(available: bool, reason: str) -> None:
    """Skip locally when a service is missing; fail under CI, where it must be there."""
    if available:
        return
    if IN_CI:
        pytest.fail(f"{reason} (CI=true: a missing service is a failure, not a skip)")
    pytest.skip(reason)


def _pg_available() -> tuple[bool, str]:
    import sqlalchemy as sa

    engine = sa.create_engine(PG_ADMIN_URL, connect_args={"connect_timeout": 3})
    try:
        with engine.connect():
            return True, ""
    except Exception as exc:  # any failure to connect means "not available"
        return False, f"PostgreSQL not reachable at {PG_ADMIN_URL}: {type(exc).__name__}"
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def pg_status() -> tuple[bool, str]:
    return _pg_available()


@pytest.fixture
def pg_url(pg_status: tuple[bool, str]) -> Iterator[str]:
    """A store URL pointing at a fresh PostgreSQL schema, dropped after the test."""
    import sqlalchemy as sa

    ok, reason = pg_status
    require_service(ok, reason)
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = sa.create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_ADMIN_URL}?options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        (tmp_path / "db").mkdir()
        return f"sqlite:///{tmp_path / 'db' / 'modelyard.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def workspace_env(store_url: str) -> dict[str, str]:
    return {"MODELYARD_STORE_URL": store_url}


@pytest.fixture
def workspace(
    tmp_path: Path, workspace_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Workspace]:
    """An initialised workspace (SQLite and PostgreSQL variants), with the current folder in it
    and the environment pointing at its store, so CLI and default-workspace calls find it."""
    root = tmp_path / "ws"
    for key, value in workspace_env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("MODELYARD_WORKSPACE", raising=False)
    monkeypatch.delenv("MODELYARD_ARTIFACT_ROOT", raising=False)
    ws, _ = Workspace.init(root, environ=workspace_env)
    monkeypatch.chdir(root)
    yield ws
    ws.close()


@pytest.fixture
def sqlite_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """A workspace on embedded defaults only, for tests that do not exercise the store."""
    for var in ("MODELYARD_STORE_URL", "MODELYARD_ARTIFACT_ROOT", "MODELYARD_WORKSPACE"):
        monkeypatch.delenv(var, raising=False)
    root = tmp_path / "ws"
    ws, _ = Workspace.init(root, environ={})
    monkeypatch.chdir(root)
    yield ws
    ws.close()


@pytest.fixture(scope="session")
def engine() -> Any:
    """The Docker engine, or a skip (a failure under CI) naming the socket it tried."""
    from modelyard.errors import EngineUnavailable
    from modelyard.images import DockerEngine

    docker = DockerEngine.from_env()
    try:
        docker.ping()
    except EngineUnavailable as exc:
        require_service(False, str(exc))
    return docker


@pytest.fixture(scope="session")
def base_image(engine: Any) -> str:
    """modelyard's Debian-made base image; an existing tag of the same recipe is reused (a cold
    build takes ~30-50 s)."""
    from modelyard.images import DEFAULT_BASE_TAG, build_base_image

    build_base_image(DEFAULT_BASE_TAG, engine=engine)
    return DEFAULT_BASE_TAG
