"""The same tests, both ways, on PostgreSQL. Every runs, datasets, models and lineage test runs
against a team server on SQLite through its module's ``remote`` marker (see conftest.py); here a
selection runs again against a server whose own store is PostgreSQL, as a team's would be."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import test_data_add
import test_lineage
import test_models_registry
import test_tracking_runs
from conftest_remote import remote_workspace, server  # noqa: F401 - fixtures used by name
from modelyard.remote import RemoteArtifactStore, RemoteStore
from modelyard.workspace import Workspace

SUITE: list[Callable[..., Any]] = [
    test_tracking_runs.test_run_records_params_metrics_tags_and_finishes,
    test_tracking_runs.test_ten_thousand_points_all_arrive,
    test_tracking_runs.test_use_dataset_and_artifacts_record_lineage,
    test_data_add.test_add_dedupes_and_numbers_versions,
    test_data_add.test_diff_reports_files_schema_and_shifts,
    test_data_add.test_checkout_round_trip_is_byte_identical,
    test_models_registry.test_log_model_then_register_by_run_and_by_path,
    test_models_registry.test_aliases_move_with_history_and_resolve,
    test_lineage.test_downstream_from_a_dataset,
    test_lineage.test_both_ways_from_a_run_prefix,
]


@pytest.fixture(scope="module")
def trained() -> Any:
    return test_models_registry.trained.__wrapped__()  # type: ignore[attr-defined]


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
@pytest.mark.parametrize("test", SUITE, ids=lambda f: f"{f.__module__}::{f.__name__}")
def test_same_suite_against_the_server(
    test: Callable[..., Any],
    remote_workspace: Workspace,  # noqa: F811
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> None:
    assert isinstance(remote_workspace.store, RemoteStore)
    assert isinstance(remote_workspace.artifacts, RemoteArtifactStore)
    kwargs: dict[str, Any] = {}
    for name in inspect.signature(test).parameters:
        if name == "workspace":
            kwargs[name] = remote_workspace
        elif name == "tmp_path":
            kwargs[name] = tmp_path / "t"
            kwargs[name].mkdir()
        else:
            kwargs[name] = request.getfixturevalue(name)
    test(**kwargs)


def test_the_client_token_is_not_recorded_in_runs(
    remote_workspace: Workspace,  # noqa: F811
    server: Any,  # noqa: F811
) -> None:
    import modelyard

    with modelyard.start_run(name="canary", params={"a": 1}) as run:
        run.log_metric("m", 1.0)
    stored = server.workspace.store.runs.get(run.id)
    token = remote_workspace.settings.server_token
    assert token
    assert token not in repr(stored)
    assert token not in repr(remote_workspace.settings)
    env_digest = stored.environment_digest
    if env_digest is not None:
        assert token.encode() not in server.workspace.artifacts.get_bytes(env_digest)
