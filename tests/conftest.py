"""Shared fixtures. Store-backed tests take ``workspace`` and run once on SQLite and once on
PostgreSQL, each PostgreSQL test in a schema of its own. Without a PostgreSQL server those
variants skip with the reason; under CI (CI=true) they fail instead.

Modules marked ``remote`` (runs, datasets, models, lineage) run a third time with ``workspace``
being a client of a team server: uvicorn on loopback over its own workspace, the client with
only ``MODELYARD_URL`` and a token. The same test body passes both ways, which is the promise
of the remote client. A test that cannot (it reads the database or the artifact folder
directly) says why with ``@pytest.mark.local_only(reason)``."""

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
_WORKSPACE_VARS = (
    "MODELYARD_STORE_URL",
    "MODELYARD_ARTIFACT_ROOT",
    "MODELYARD_ARTIFACTS_URL",
    "MODELYARD_WORKSPACE",
    "MODELYARD_URL",
    "MODELYARD_TOKEN",
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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" not in metafunc.fixturenames:
        return
    if any("backend" in str(m.args[0]) for m in metafunc.definition.iter_markers("parametrize")):
        return  # the test chose its backends itself
    backends = ["sqlite", "postgres"]
    definition = metafunc.definition
    if definition.get_closest_marker("remote") and not definition.get_closest_marker("local_only"):
        backends.append("remote")
    metafunc.parametrize("backend", backends, indirect=True)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """Where the metadata lives: ``sqlite``, ``postgres`` or ``remote`` (a team server)."""
    return str(request.param)


@pytest.fixture
def store_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The database URL (for ``remote``, the server's own, on SQLite)."""
    if backend in ("sqlite", "remote"):
        (tmp_path / "db").mkdir()
        return f"sqlite:///{tmp_path / 'db' / 'modelyard.db'}"
    url: str = request.getfixturevalue("pg_url")
    return url


@pytest.fixture
def team_server(store_url: str, tmp_path: Path) -> Iterator[Any]:
    """A team server over a workspace of its own (on ``store_url``), with an admin token."""
    from conftest_remote import start_server

    ws, _ = Workspace.init(tmp_path / "server", environ={"MODELYARD_STORE_URL": store_url})
    running = start_server(ws)
    yield running
    running.stop()
    ws.close()


@pytest.fixture
def workspace_env(backend: str, store_url: str, request: pytest.FixtureRequest) -> dict[str, str]:
    """The environment that points a process at the test's store, local or remote."""
    if backend == "remote":
        server = request.getfixturevalue("team_server")
        return {"MODELYARD_URL": server.url, "MODELYARD_TOKEN": server.admin_token}
    return {"MODELYARD_STORE_URL": store_url}


@pytest.fixture
def workspace(
    tmp_path: Path, workspace_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> Iterator[Workspace]:
    """An initialised workspace (SQLite and PostgreSQL variants), with the current folder in it
    and the environment pointing at its store, so CLI and default-workspace calls find it."""
    root = tmp_path / "ws"
    for var in _WORKSPACE_VARS:
        monkeypatch.delenv(var, raising=False)
    for key, value in workspace_env.items():
        monkeypatch.setenv(key, value)
    ws, _ = Workspace.init(root, environ=workspace_env)
    if "MODELYARD_URL" in workspace_env:  # the remote variant must really go through the server
        from modelyard.remote import RemoteArtifactStore, RemoteStore

        assert isinstance(ws.store, RemoteStore)
        assert isinstance(ws.artifacts, RemoteArtifactStore)
    monkeypatch.chdir(root)
    yield ws
    ws.close()


@pytest.fixture
def sqlite_workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Workspace]:
    """A workspace on embedded defaults only, for tests that do not exercise the store."""
    for var in _WORKSPACE_VARS:
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


# --- an S3 bucket (moto_server from scripts/services.sh) ---------------------------------------
@pytest.fixture(scope="session")
def s3() -> Any:
    """A boto3 client of the test S3 server; a skip (a failure under CI) without one."""
    from conftest_s3 import S3_ENDPOINT, reachable, s3_client

    require_service(
        reachable(S3_ENDPOINT),
        f"no S3 server at {S3_ENDPOINT} (scripts/services.sh starts moto_server there)",
    )
    return s3_client()


@pytest.fixture
def bucket(s3: Any) -> Iterator[str]:
    """A fresh bucket's name, emptied and removed after the test (moto keeps it in memory)."""
    from conftest_s3 import empty_bucket

    name = f"modelyard-{uuid.uuid4().hex[:20]}"
    s3.create_bucket(Bucket=name)
    yield name
    empty_bucket(s3, name)


@pytest.fixture
def s3_workspace(bucket: str, tmp_path: Path) -> Iterator[Workspace]:
    """A workspace on SQLite whose artifacts live in ``bucket`` under ``team/artifacts``."""
    from conftest_s3 import s3_env

    ws, _ = Workspace.init(tmp_path / "ws", environ=s3_env(bucket))
    yield ws
    ws.close()


OPEN_REGISTRY = "127.0.0.1:5000"


def registry_up(host: str) -> bool:
    """An OCI registry answers ``/v2/`` on ``host`` (401 counts: it is there, it wants a login)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(f"http://{host}/v2/", timeout=2):
            return True
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code == 401
    except OSError:
        return False


@pytest.fixture(scope="session")
def open_registry() -> str:
    """The open registry of scripts/registry.sh (a skip without it, a failure under CI)."""
    require_service(registry_up(OPEN_REGISTRY), f"no registry on {OPEN_REGISTRY}")
    return OPEN_REGISTRY


@pytest.fixture(scope="session")
def churn_image(
    engine: Any, base_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Workspace]:
    """A workspace whose ``churn@1`` (scikit-learn) has its model image built: for tests that
    run a model image as a platform would. Docker's cache keeps later sessions' builds short."""
    pytest.importorskip("sklearn")
    from _deploy_helpers import register_churn
    from modelyard.packaging import build_model_image

    ws, _ = Workspace.init(tmp_path_factory.mktemp("churn-image") / "ws", environ={})
    (ref,) = register_churn(ws, 1)
    build_model_image(ref, workspace=ws, base_image=base_image, engine=engine)
    yield ws
    ws.close()
