"""Tracked runs through the Python API, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

import modelyard
from modelyard.errors import InvalidParameter, InvalidReference, NotFound, RunError
from modelyard.store import RUN_FAILED, RUN_FINISHED, RUN_RUNNING
from modelyard.tracking import ActiveRun, load_environment, start_run
from modelyard.workspace import Workspace

pytestmark = pytest.mark.remote  # the same tests against a team server too


def _dataset(ws: Workspace, name: str = "sensors", fill: str = "a") -> str:
    version, _ = ws.store.datasets.add_version(
        name,
        digest="sha256:" + fill * 64,
        kind="file",
        format="csv",
        size=10,
        file_count=1,
        schema=None,
        profile=None,
        source=None,
    )
    return version.ref


def test_run_records_params_metrics_tags_and_finishes(workspace: Workspace) -> None:
    with modelyard.start_run(
        name="train", pipeline="churn", params={"lr": 0.1, "depth": 3}, tags={"team": "a"}
    ) as run:
        assert isinstance(run, ActiveRun)
        assert workspace.store.runs.get(run.id).status == RUN_RUNNING
        run.log_param("optimizer", "adam")
        run.log_metric("loss", 0.5)
        run.log_metric("loss", 0.25)
        run.log_metrics({"acc": 0.9, "f1": 0.8}, step=7)
        run.set_tag("team", "b")
    stored = workspace.store.runs.get(run.id)
    assert stored.status == RUN_FINISHED
    assert stored.end_time is not None
    assert stored.end_time >= stored.start_time
    assert (stored.name, stored.pipeline) == ("train", "churn")
    assert stored.params == {"lr": "0.1", "depth": "3", "optimizer": "adam"}
    assert stored.tags == {"team": "b"}
    assert stored.latest_metrics == {"loss": 0.25, "acc": 0.9, "f1": 0.8}
    history = workspace.store.runs.metric_history(run.id, "loss")
    assert [(m.step, m.value) for m in history] == [(0, 0.5), (1, 0.25)]
    assert [m.step for m in workspace.store.runs.metric_history(run.id, "acc")] == [7]


def test_run_captures_environment(workspace: Workspace) -> None:
    import platform

    with start_run(workspace=workspace) as run:
        pass
    stored = workspace.store.runs.get(run.id)
    assert stored.python_version == platform.python_version()
    assert stored.host
    assert stored.user
    assert stored.git_commit is None  # the test workspace is not in a git repository
    assert stored.environment_digest is not None
    env = load_environment(workspace, stored.environment_digest)
    assert env.packages["SQLAlchemy"] == __import__("sqlalchemy").__version__
    assert list(env.packages) == sorted(env.packages)
    with start_run(workspace=workspace) as again:
        pass
    # the same environment is one blob, shared by both runs
    assert workspace.store.runs.get(again.id).environment_digest == stored.environment_digest


def test_exception_inside_with_fails_the_run_and_propagates(workspace: Workspace) -> None:
    def fail(run: ActiveRun) -> None:
        run.log_metric("loss", 1.0)
        raise ZeroDivisionError("division by zero")

    run = start_run(name="bad")
    with pytest.raises(ZeroDivisionError), run:
        fail(run)
    stored = workspace.store.runs.get(run.id)
    assert stored.status == RUN_FAILED
    assert stored.error == "ZeroDivisionError: division by zero"
    assert stored.latest_metrics == {"loss": 1.0}  # buffered points are not lost on failure


def test_logging_to_an_ended_run_is_an_error(workspace: Workspace) -> None:
    run = start_run()
    run.end()
    for call in (
        lambda: run.log_metric("x", 1.0),
        lambda: run.log_param("a", 1),
        lambda: run.set_tag("a", "b"),
        lambda: run.add_output("dataset_version", "x@1"),
        lambda: run.end(),
    ):
        with pytest.raises(RunError, match="has ended"):
            call()


def test_explicit_end_inside_with_is_kept(workspace: Workspace) -> None:
    with start_run() as run:
        run.end("failed", "gave up")
    stored = workspace.store.runs.get(run.id)
    assert (stored.status, stored.error) == ("failed", "gave up")
    other = start_run()
    with pytest.raises(InvalidParameter, match="finished, failed"):
        other.end("done")
    other.end()  # the bad call did not end it


def test_params_are_write_once(workspace: Workspace) -> None:
    with start_run(params={"lr": 0.1}) as run:
        run.log_param("lr", 0.1)  # the same value again is fine
        with pytest.raises(RunError, match="cannot change"):
            run.log_param("lr", 0.2)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_metrics_are_rejected(sqlite_workspace: Workspace, bad: float) -> None:
    with start_run() as run:
        with pytest.raises(InvalidParameter, match="only finite values"):
            run.log_metric("loss", bad)
        with pytest.raises(InvalidParameter, match="must be a number"):
            run.log_metric("loss", "0.1")  # type: ignore[arg-type]
        with pytest.raises(InvalidParameter, match="step"):
            run.log_metric("loss", 1.0, step=-1)
    assert sqlite_workspace.store.runs.count_metrics([run.id]) == 0


def test_explicit_steps_move_the_counter(sqlite_workspace: Workspace) -> None:
    with start_run() as run:
        run.log_metric("m", 1.0, step=10)
        run.log_metric("m", 2.0)
        run.log_metric("other", 3.0)
    steps = [(m.key, m.step) for m in sqlite_workspace.store.runs.metric_history(run.id)]
    assert steps == [("m", 10), ("m", 11), ("other", 0)]


def test_ten_thousand_points_all_arrive(workspace: Workspace) -> None:
    with start_run() as run:
        for i in range(10_000):
            run.log_metric("loss", 1.0 / (i + 1))
        # the buffer flushes itself every 1000 points, so most are already stored
        assert workspace.store.runs.count_metrics([run.id]) >= 9_000
    assert workspace.store.runs.count_metrics([run.id]) == 10_000
    last = workspace.store.runs.metric_history(run.id, "loss")[-1]
    assert (last.step, last.value) == (9_999, 1.0 / 10_000)


def test_heartbeat_flushes_buffered_metrics(sqlite_workspace: Workspace) -> None:
    import time

    with start_run(heartbeat_interval_s=0.05) as run:
        before = sqlite_workspace.store.runs.get(run.id).heartbeat_at
        run.log_metric("loss", 1.0)  # far below the flush threshold
        deadline = time.monotonic() + 10
        while sqlite_workspace.store.runs.count_metrics([run.id]) == 0:
            assert time.monotonic() < deadline, "heartbeat never flushed the buffer"
            time.sleep(0.02)
        while sqlite_workspace.store.runs.get(run.id).heartbeat_at == before:
            assert time.monotonic() < deadline, "heartbeat never updated"
            time.sleep(0.02)


def test_metrics_are_written_within_the_flush_interval(sqlite_workspace: Workspace) -> None:
    """A kill loses at most the last ``flush_interval_s`` (0.5 s) of points: a point is stored
    that soon even with a minute between heartbeats and far below ``flush_every`` (on main it
    waited for the next heartbeat, 10 s by default)."""
    import time

    with start_run(heartbeat_interval_s=60) as run:
        assert run.settings.flush_interval_s == 0.5
        before = sqlite_workspace.store.runs.get(run.id).heartbeat_at
        logged = time.monotonic()
        run.log_metric("loss", 1.0)
        while sqlite_workspace.store.runs.count_metrics([run.id]) == 0:
            assert time.monotonic() < logged + 10, "the timer never flushed the buffer"
            time.sleep(0.02)
        # Written by the flush timer, not a heartbeat (none is due for a minute).
        assert sqlite_workspace.store.runs.get(run.id).heartbeat_at == before


def test_use_dataset_and_artifacts_record_lineage(workspace: Workspace, tmp_path: Path) -> None:
    ref = _dataset(workspace)
    model = tmp_path / "model.bin"
    model.write_bytes(b"weights")
    folder = tmp_path / "plots"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "roc.txt").write_text("roc")
    with start_run() as run:
        version = run.use_dataset("sensors")  # latest
        digest = run.log_artifact(model)
        folder_digest = run.log_artifact(folder, name="reports/plots")
        run.add_output("model_version", "churn@2")
    assert version.ref == ref
    assert workspace.artifacts.get_bytes(digest) == b"weights"
    arts = {a.name: (a.kind, a.size, a.digest) for a in workspace.store.runs.artifacts(run.id)}
    assert arts == {
        "model.bin": ("file", 7, digest),
        "reports/plots": ("directory", 3, folder_digest),
    }
    inputs = [
        (e.source_type, e.source_id, e.relation)
        for e in workspace.store.lineage.edges_to("run", run.id)
    ]
    assert inputs == [("dataset_version", "sensors@1", "input")]
    outputs = {
        (e.target_type, e.target_id) for e in workspace.store.lineage.edges_from("run", run.id)
    }
    assert outputs == {
        ("artifact", digest),
        ("artifact", folder_digest),
        ("model_version", "churn@2"),
    }


def test_bad_inputs_are_clear_errors(sqlite_workspace: Workspace, tmp_path: Path) -> None:
    _dataset(sqlite_workspace)
    with start_run() as run:
        with pytest.raises(NotFound, match="no version 9"):
            run.use_dataset("sensors@9")
        with pytest.raises(InvalidReference, match="no aliases"):
            run.use_dataset("sensors@prod")
        with pytest.raises(NotFound, match="no such file or folder"):
            run.log_artifact(tmp_path / "missing.bin")
        (tmp_path / "ok.bin").write_bytes(b"x")
        with pytest.raises(Exception, match="must not contain"):
            run.log_artifact(tmp_path / "ok.bin", name="../escape")


def test_pipeline_step_is_contained_in_its_parent(workspace: Workspace) -> None:
    with start_run(name="pipeline", pipeline="p") as parent:
        step = start_run(name="step", pipeline="p", parent_id=parent.id[:8])
        step.end()
    stored = workspace.store.runs.get(step.id)
    assert stored.parent_id == parent.id
    edges = workspace.store.lineage.edges_from("run", parent.id)
    assert [(e.target_id, e.relation) for e in edges] == [(step.id, "contains")]


def test_start_run_finds_the_workspace_from_the_current_folder(workspace: Workspace) -> None:
    with start_run(name="implicit") as run:
        assert run.workspace.root == workspace.root
    assert workspace.store.runs.get(run.id).name == "implicit"


def test_public_api_is_exported() -> None:
    import modelyard.tracking as tracking

    assert modelyard.start_run is tracking.start_run
    assert modelyard.ActiveRun is tracking.ActiveRun
    exported = {n for n in dir(tracking) if not n.startswith("_")}
    modules = {"environment", "lineage", "model_folder", "query", "replay", "run", "settings"}
    assert exported - modules == set(tracking.__all__)


def test_points_logged_while_the_run_ends_are_stored_or_refused(workspace: Workspace) -> None:
    """Found in review: a thread racing end() could append after the final flush (lost)."""
    import threading

    from modelyard.errors import RunError
    from modelyard.tracking import start_run

    run = start_run("race", workspace=workspace)
    accepted = 0
    stop = threading.Event()
    going = threading.Event()

    def writer() -> None:
        nonlocal accepted
        while not stop.is_set():
            try:
                run.log_metric("x", 1.0)
            except RunError:
                return
            accepted += 1
            if accepted == 200:
                going.set()

    thread = threading.Thread(target=writer)
    thread.start()
    assert going.wait(timeout=30)
    run.end()
    stop.set()
    thread.join()
    assert workspace.store.runs.count_metrics([run.id]) == accepted
