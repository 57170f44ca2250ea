"""`modelyard runs list/show/compare` and the lost-run detection, through the real CLI."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time

import pytest
from click.testing import CliRunner

from modelyard.cli.main import cli
from modelyard.tracking import start_run
from modelyard.workspace import Workspace

pytestmark = pytest.mark.remote  # the same tests against a team server too


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich tables fit the width; keep rows on one line


def _invoke(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_list_show_and_compare(workspace: Workspace) -> None:
    with start_run(name="a", pipeline="churn", params={"lr": 0.1, "depth": 3}) as one:
        one.log_metric("loss", 0.5)
        one.log_metric("loss", 0.25)
        one.set_tag("team", "ml")
    two = start_run(name="b", params={"lr": 0.2, "depth": 3})
    two.log_metric("loss", 0.75)
    two.end("failed", "RuntimeError: diverged")

    code, out, _ = _invoke("runs", "list")
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == [
        "ID",
        "NAME",
        "PIPELINE",
        "STATUS",
        "STARTED",
        "DURATION",
        "METRICS",
    ]
    assert lines[1].split()[:3] == [two.id[:12], "b", "failed"]
    assert lines[2].split()[:4] == [one.id[:12], "a", "churn", "finished"]
    assert lines[2].endswith("loss=0.25")

    code, out, _ = _invoke("runs", "list", "--status", "failed")
    assert (code, len(out.splitlines())) == (0, 2)
    code, out, _ = _invoke("runs", "list", "--pipeline", "churn", "--limit", "5")
    assert [line.split()[0] for line in out.splitlines()[1:]] == [one.id[:12]]
    assert _invoke("runs", "list", "--pipeline", "nope")[1] == "No matching runs.\n"

    code, out, _ = _invoke("runs", "show", one.id[:6])
    assert code == 0
    assert out.splitlines()[0] == f"Run {one.id}  a"
    assert "status       finished" in out
    assert "code         - (not in a git repository)" in out
    run = workspace.store.runs.get(one.id)
    assert f"environment  {run.environment_digest}" in out
    assert "\nParameters\ndepth  3\nlr     0.1\n" in out
    assert "loss  0.25  (2 points)" in out
    assert "team  ml" in out

    code, out, _ = _invoke("runs", "show", two.id)
    assert "error        RuntimeError: diverged" in out

    code, out, _ = _invoke("runs", "compare", one.id[:8], two.id[:8])
    assert code == 0
    rows = {line.split()[-3]: line for line in out.splitlines()[1:]}
    assert rows["depth"].split() == ["param", "depth", "3", "3"]
    assert rows["lr"].split() == ["*", "param", "lr", "0.1", "0.2"]
    assert rows["loss"].split() == ["*", "metric", "loss", "0.25", "0.75"]


def test_show_counts_metric_points_in_sql_without_loading_them(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    from modelyard.store.tracking import RunRepository

    with start_run(name="long") as run:
        for step in range(1500):
            run.log_metric("loss", 1.0 / (step + 1))
        run.log_metric("f1", 0.9)
    assert workspace.store.runs.metric_counts(run.id) == {"f1": 1, "loss": 1500}
    assert workspace.store.runs.metric_counts("0" * 32) == {}

    def no_history(*args: object, **kwargs: object) -> None:
        raise AssertionError("runs show must not load metric points")

    monkeypatch.setattr(RunRepository, "metric_history", no_history)
    statements: list[str] = []

    def record(_conn: object, _cursor: object, statement: str, *args: object) -> None:
        statements.append(" ".join(statement.split()))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        code, out, _ = _invoke("runs", "show", run.id)
    finally:
        event.remove(Engine, "before_cursor_execute", record)
    assert code == 0
    assert f"\nMetrics\nf1    0.9\nloss  {1 / 1500:.6g}  (1500 points)\n" in out
    touching = [s for s in statements if "run_metrics" in s]
    assert touching  # the latest values and the counts come from the metrics table …
    assert all("GROUP BY" in s.upper() for s in touching), touching  # … aggregated in SQL


def test_errors_are_one_line_with_exit_codes(workspace: Workspace) -> None:
    run = start_run()
    run.end()
    missing = "0123456789abcdef0123456789abcdef"
    assert _invoke("runs", "show", missing) == (1, "", f"error: no run '{missing}'\n")
    code, _, err = _invoke("runs", "show", run.id[:2])
    assert (code, err) == (2, f"error: run id prefix '{run.id[:2]}' is too short (need 4+)\n")
    code, _, err = _invoke("runs", "show", "not-hex")
    assert (code, err) == (2, "error: 'not-hex' is not a run id (hex digits)\n")
    code, _, err = _invoke("runs", "compare", run.id)
    assert code == 2
    assert "at least two runs" in err
    assert _invoke("runs", "list", "--status", "weird")[0] == 2


def test_ambiguous_prefix(workspace: Workspace) -> None:
    """Two runs whose ids share 4 characters: created directly with chosen ids."""
    for suffix in ("1", "2"):
        workspace.store.runs.create("abcd" + suffix * 28)
    code, _, err = _invoke("runs", "show", "abcd")
    assert (code, err) == (2, "error: run id prefix 'abcd' is ambiguous\n")
    code, out, _ = _invoke("runs", "show", "abcd1")
    assert code == 0
    assert out.startswith("Run abcd" + "1" * 28)


_CHILD = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from modelyard.tracking import start_run
    from modelyard.workspace import Workspace

    ws = Workspace.at(Path(sys.argv[1]))
    run = start_run(name="doomed", workspace=ws)
    run.log_metric("loss", 1.0)
    run.flush()
    print(run.id, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.slow
def test_killed_process_leaves_a_lost_run(
    workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_HEARTBEAT_INTERVAL", "0.2")  # stale after 0.6 s
    proc = subprocess.run(
        [sys.executable, "-c", _CHILD, str(workspace.root)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    run_id = proc.stdout.strip()
    stored = workspace.store.runs.get(run_id)
    assert stored.status == "running"  # nobody could mark it
    assert stored.latest_metrics == {"loss": 1.0}
    deadline = time.monotonic() + 30
    while True:
        code, out, _ = _invoke("runs", "list", "--status", "lost")
        if run_id[:12] in out:
            break
        assert time.monotonic() < deadline, f"run never shown as lost:\n{out}"
        time.sleep(0.1)
    assert code == 0
    assert out.splitlines()[1].split()[:3] == [run_id[:12], "doomed", "lost"]
    assert "lost" in _invoke("runs", "show", run_id)[1].splitlines()[1]
    # a live run is not lost, and 'running' excludes the lost one
    with start_run(name="alive", workspace=workspace) as live:
        code, out, _ = _invoke("runs", "list", "--status", "running")
        assert [line.split()[0] for line in out.splitlines()[1:]] == [live.id[:12]]
