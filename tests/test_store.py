"""The metadata store on both backends: migrations, repositories, version allocation."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from modelyard.errors import NotFound, RunError, StoreUnavailable, StoreVersionError
from modelyard.store import RUN_FINISHED, Store, migrate
from modelyard.store.schema import Base


def _add(store: Store, name: str, digest: str) -> tuple[int, bool]:
    v, created = store.datasets.add_version(
        name,
        digest=digest,
        kind="file",
        format="csv",
        size=3,
        file_count=1,
        schema=None,
        profile=None,
        source=None,
    )
    return v.version, created


def test_fresh_store_is_migrated_to_head(store_url: str) -> None:
    with Store.open(store_url) as store, store.db.engine.connect() as conn:
        assert migrate.current_revision(conn) == migrate.head_revision()
        tables = set(sa.inspect(conn).get_table_names())
    assert set(Base.metadata.tables) <= tables


def test_migrations_match_the_models(store_url: str) -> None:
    """The Alembic history and schema.py describe the same tables."""
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    with Store.open(store_url) as store, store.db.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == []


def test_database_newer_than_code_is_refused(store_url: str) -> None:
    Store.open(store_url).close()
    engine = sa.create_engine(store_url.replace("postgresql+psycopg", "postgresql+psycopg"))
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE alembic_version SET version_num = '9999_future'"))
    engine.dispose()
    with pytest.raises(StoreVersionError, match="newer than this modelyard"):
        Store.open(store_url)


def test_unreachable_store_is_a_clear_error() -> None:
    with pytest.raises(StoreUnavailable, match="cannot connect to the store"):
        Store.open("postgresql://nobody:secret@127.0.0.1:1/none")


def test_password_never_shows_in_the_error() -> None:
    with pytest.raises(StoreUnavailable) as info:
        Store.open("postgresql://nobody:hunter2@127.0.0.1:1/none")
    assert "hunter2" not in str(info.value)


def test_dataset_versions_are_numbered_and_deduplicated(store_url: str) -> None:
    a, b = "sha256:" + "a" * 64, "sha256:" + "b" * 64
    with Store.open(store_url) as store:
        assert _add(store, "sensors", a) == (1, True)
        assert _add(store, "sensors", a) == (1, False)
        assert _add(store, "sensors", b) == (2, True)
        assert _add(store, "other", b) == (1, True)
        assert store.datasets.get_version("sensors").version == 2
        assert store.datasets.get_version("sensors", digest=a).version == 1
        assert [d.latest_version for d in store.datasets.all()] == [1, 2]
        with pytest.raises(NotFound, match="has no version 7"):
            store.datasets.get_version("sensors", 7)
        with pytest.raises(NotFound, match="no dataset named 'nope'"):
            store.datasets.get("nope")


def test_params_are_write_once(store_url: str) -> None:
    with Store.open(store_url) as store:
        store.runs.create("a" * 32, name="r")
        store.runs.log_params("a" * 32, {"lr": "0.1"})
        store.runs.log_params("a" * 32, {"lr": "0.1"})
        with pytest.raises(RunError, match="cannot change"):
            store.runs.log_params("a" * 32, {"lr": "0.2"})
        store.runs.finish("a" * 32, RUN_FINISHED)
        run = store.runs.get("aaaa")
    assert run.params == {"lr": "0.1"}
    assert run.status == RUN_FINISHED
    assert run.end_time is not None
    assert run.end_time.tzinfo is not None


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    bogus = tmp_path / "modelyard.db"
    bogus.write_bytes(b"this is not an SQLite database, just text" * 100)
    with pytest.raises(StoreUnavailable, match="cannot connect to the store"):
        Store.open(f"sqlite:///{bogus}")


def test_an_unknown_run_is_not_found_not_contention(store_url: str) -> None:
    """Found in review: a broken foreign key was retried 20 times and reported as contention."""
    with Store.open(store_url) as store, pytest.raises(NotFound, match="does not exist"):
        store.models.add_version(
            "m", digest="sha256:" + "c" * 64, flavor="sklearn", signature=None,
            requirements={}, run_id="f" * 32, source=None,
        )  # fmt: skip


def test_racing_registrations_of_one_run_make_one_version(store_url: str) -> None:
    """Found in review: the "already registered?" check ran in its own transaction before the
    insert, so two registrations of the same run and content racing both passed it and made two
    versions. Each thread has its own connection; a barrier starts them together."""
    import threading

    from modelyard.store.models_entities import ModelVersion

    with Store.open(store_url) as store:
        store.runs.create("r" * 32, name="train")
    digest, results, errors = "sha256:" + "d" * 64, list[ModelVersion](), list[BaseException]()
    barrier = threading.Barrier(6)

    def register() -> None:
        with Store.open(store_url) as own:
            barrier.wait()
            try:
                results.append(
                    own.models.add_version(
                        "m",
                        digest=digest,
                        flavor="sklearn",
                        signature=None,
                        requirements={},
                        run_id="r" * 32,
                        source=None,
                    )  # fmt: skip
                )
            except BaseException as exc:  # reported below, with the thread's error
                errors.append(exc)

    threads = [threading.Thread(target=register) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert {v.version for v in results} == {1}
    with Store.open(store_url) as store:
        assert [v.version for v in store.models.versions("m")] == [1]
        # Another run's identical content is a version of its own.
        store.runs.create("s" * 32, name="train")
        other = store.models.add_version(
            "m", digest=digest, flavor="sklearn", signature=None,
            requirements={}, run_id="s" * 32, source=None,
        )  # fmt: skip
        assert other.version == 2


def test_the_head_read_from_the_files_is_alembics() -> None:
    """Opening a store at head skips importing Alembic by reading the head from the migration
    files; it must be the head Alembic computes."""
    assert migrate._head_from_files() == migrate.head_revision()
