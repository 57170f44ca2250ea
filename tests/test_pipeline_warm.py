"""Warm workers (the local runner's fork server): steps start from a process that already
imported the heavy modules, and stay isolated: a crash, a timeout or a leaked global in one step
cannot affect another."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from modelyard.pipeline.run import run_pipeline
from modelyard.pipeline.runners.local import LocalRunner, third_party_imports
from modelyard.workspace import Workspace

PIPELINE = """
import os, signal, subprocess, sys, time
from modelyard.pipeline import Pipeline, step

MODE = "{mode}"

@step(cache=False)
def first() -> dict:
    import pandas
    # leak everything a step could leak into a shared interpreter
    pandas.LEAKED = "first"
    pandas.read_csv = None
    os.environ["LEAKED_BY_FIRST"] = "1"
    sys.modules["leaked_module"] = object()
    sys.path.append("/leaked/path")
    return {{"pid": os.getpid(), "ppid": os.getppid(), "pandas_preloaded": True}}

@step(cache=False, timeout=2.0)
def fragile(first: dict) -> int:
    if MODE == "crash":
        import ctypes
        ctypes.string_at(0)  # a segfault
    if MODE == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if MODE == "hang":
        # a grandchild too: the timeout must take the step's whole session down
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
        with open("grandchild.pid", "w") as f:
            f.write(str(child.pid))
        time.sleep(600)
    return 1

@step(cache=False)
def after(first: dict) -> dict:
    import pandas
    return {{
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "leaked_attr": hasattr(pandas, "LEAKED"),
        "read_csv_works": callable(pandas.read_csv),
        "leaked_env": os.environ.get("LEAKED_BY_FIRST"),
        "leaked_module": "leaked_module" in sys.modules,
        "leaked_path": "/leaked/path" in sys.path,
    }}

pipeline = Pipeline("warm", [first, fragile, after])
"""


def _run(ws: Workspace, mode: str, runner: LocalRunner) -> object:
    path = ws.root / "warm.py"
    path.write_text(textwrap.dedent(PIPELINE.format(mode=mode)))
    return run_pipeline(path, workspace=ws, runner=runner, jobs=2)


def _output(ws: Workspace, run: object, step: str) -> dict[str, object]:
    import json

    doc = run.step(step).outputs[step]  # type: ignore[attr-defined]
    loaded: dict[str, object] = json.loads(ws.artifacts.get_bytes(doc["digest"]))
    return loaded


class _Watching(LocalRunner):
    """Records the fork server's pid while it is up (the runner closes it after the run)."""

    servers: list[int]

    def execute(self, task_path: Path, *, timeout: float | None, log_path: Path):  # type: ignore[no-untyped-def]
        result = super().execute(task_path, timeout=timeout, log_path=log_path)
        assert self._server is not None
        self.servers.append(self._server.proc.pid)
        return result


@pytest.fixture
def runner() -> _Watching:
    r = _Watching(warm=True)
    r.servers = []
    return r


def test_steps_fork_from_one_warm_server_and_a_leaked_global_stays_in_its_step(
    sqlite_workspace: Workspace, runner: _Watching, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(sqlite_workspace.root)
    run = _run(sqlite_workspace, "ok", runner)
    assert run.status == "finished", run.error  # type: ignore[attr-defined]
    first, after = _output(sqlite_workspace, run, "first"), _output(sqlite_workspace, run, "after")
    # every step a child of the same server process, each its own process
    assert len(set(runner.servers)) == 1
    assert first["ppid"] == after["ppid"] == runner.servers[0]
    assert first["pid"] != after["pid"]
    assert after == {
        **after,
        "leaked_attr": False,
        "read_csv_works": True,
        "leaked_env": None,
        "leaked_module": False,
        "leaked_path": False,
    }
    # the server is gone once the run is over
    with pytest.raises(ProcessLookupError):
        os.kill(runner.servers[0], 0)


@pytest.mark.parametrize("mode", ["crash", "kill"])
def test_a_crashing_step_fails_alone(
    sqlite_workspace: Workspace, runner: _Watching, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(sqlite_workspace.root)
    run = _run(sqlite_workspace, mode, runner)
    assert run.status == "failed"  # type: ignore[attr-defined]
    signame = "SIGSEGV" if mode == "crash" else "SIGKILL"
    fragile = run.step("fragile")  # type: ignore[attr-defined]
    assert fragile.status == "failed"
    assert f"worker was killed by {signame}" in (fragile.error or "")
    # the step beside it ran to the end in a process forked from the same, still-running server
    assert run.step("after").status == "finished"  # type: ignore[attr-defined]
    assert len(set(runner.servers)) == 1


def test_a_timed_out_step_is_killed_with_its_children_and_the_others_carry_on(
    sqlite_workspace: Workspace, runner: _Watching, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(sqlite_workspace.root)
    run = _run(sqlite_workspace, "hang", runner)
    fragile = run.step("fragile")  # type: ignore[attr-defined]
    assert fragile.status == "failed"
    assert "timed out after 2 s and was killed" in (fragile.error or "")
    assert run.step("after").status == "finished"  # type: ignore[attr-defined]
    grandchild = int((sqlite_workspace.root / "grandchild.pid").read_text())
    # killed with the step's session (a zombie until init reaps it counts as gone)
    status = Path(f"/proc/{grandchild}/stat")
    assert not status.exists() or status.read_text().split(") ")[1].startswith("Z")


def test_the_server_preloads_what_the_pipeline_file_imports(tmp_path: Path) -> None:
    (tmp_path / "helpers.py").write_text("X = 1\n")
    path = tmp_path / "p.py"
    path.write_text(
        "import pandas as pd\nimport helpers\nfrom sklearn.model_selection import KFold\n"
        "def f():\n    from sklearn.ensemble import RandomForestClassifier\n"
        "from . import sibling\n"
    )
    import sys

    sys.path.insert(0, str(tmp_path))
    try:
        found = third_party_imports(path)
    finally:
        sys.path.remove(str(tmp_path))
    assert found == ["pandas", "sklearn.model_selection", "sklearn.ensemble"]


def test_fresh_processes_still_available(
    sqlite_workspace: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(sqlite_workspace.root)
    monkeypatch.setenv("MODELYARD_WARM_WORKERS", "0")
    runner = LocalRunner()
    assert runner.warm is False
    run = _run(sqlite_workspace, "ok", runner)
    assert run.status == "finished", run.error  # type: ignore[attr-defined]
    assert runner._server is None
