"""Running pipelines: caching, failures, kills, timeouts, retries, resume, parallelism,
lineage. Runs that only need *a* store use SQLite; the end-to-end one runs on both backends."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from modelyard.pipeline.run import resume_pipeline, run_pipeline
from modelyard.pipeline.runners.local import InProcessRunner
from modelyard.workspace import Workspace

CHAIN = """
from pathlib import Path
from modelyard.pipeline import Pipeline, current_run, step

def bump(x):
    return x + OFFSET

OFFSET = 0

@step
def numbers(n: int = 4) -> list:
    return list(range(n))

@step
def total(numbers: list, scale: int = 1) -> int:
    value = bump(sum(numbers)) * scale
    current_run().log_metric("total", value)
    return value

@step
def report(total: int) -> dict:
    return {"total": total}

@step(cache=False)
def stamp(total: int) -> str:
    return "stamped"

pipeline = Pipeline("chain", [numbers, total, report, stamp])
"""


def _write(ws: Workspace, name: str, source: str) -> Path:
    path = ws.root / name
    path.write_text(textwrap.dedent(source))
    return path


def _statuses(run: object) -> dict[str, str]:
    return {s.step: s.status for s in run.steps}  # type: ignore[attr-defined]


def test_run_cache_and_lineage(workspace: Workspace) -> None:
    path = _write(workspace, "chain.py", CHAIN)
    first = run_pipeline(path, workspace=workspace)
    assert first.status == "finished", first.error
    assert _statuses(first) == dict.fromkeys(("numbers", "total", "report", "stamp"), "finished")
    total = first.step("total")
    assert total.outputs is not None
    assert total.outputs["total"]["serializer"] == "json"
    step_run = workspace.store.runs.get(total.run_id or "")
    assert (step_run.pipeline, step_run.parent_id) == ("chain", first.id)
    assert step_run.latest_metrics == {"total": 6.0}

    # lineage: the pipeline run contains its step runs, which read and write artifacts
    contains = {e.target_id for e in workspace.store.lineage.edges_from("run", first.id)}
    assert contains == {s.run_id for s in first.steps}
    digest = first.step("numbers").outputs["numbers"]["digest"]  # type: ignore[index]
    assert [e.target_id for e in workspace.store.lineage.edges_from("artifact", digest)] == [
        total.run_id
    ]

    second = run_pipeline(path, workspace=workspace)
    assert _statuses(second) == {
        "numbers": "cached",
        "total": "cached",
        "report": "cached",
        "stamp": "finished",  # cache=False
    }
    assert second.step("total").run_id == total.run_id


def test_cache_misses_on_param_code_and_input_change(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    path = _write(ws, "chain.py", CHAIN)
    run_pipeline(path, workspace=ws)
    # a parameter only `total` reads: numbers stays cached
    by_param = run_pipeline(path, workspace=ws, params={"scale": 2})
    assert _statuses(by_param)["numbers"] == "cached"
    assert _statuses(by_param)["total"] == "finished"
    assert _statuses(by_param)["report"] == "finished"  # its input digest changed
    # an input change upstream: numbers' output changes, so everything below re-runs
    by_input = run_pipeline(path, workspace=ws, params={"n": 5, "scale": 2})
    assert set(_statuses(by_input).values()) == {"finished"}
    # a code change in a helper the step calls
    path.write_text(textwrap.dedent(CHAIN).replace("OFFSET = 0", "OFFSET = 1"))
    by_code = run_pipeline(path, workspace=ws)
    assert _statuses(by_code)["numbers"] == "cached"
    assert _statuses(by_code)["total"] == "finished"
    # --no-cache
    forced = run_pipeline(path, workspace=ws, use_cache=False)
    assert set(_statuses(forced).values()) == {"finished"}


FAILING = """
import os
from pathlib import Path
from modelyard.pipeline import Pipeline, step

MODE = "raise"

@step
def source() -> list:
    return [1, 2, 3]

@step
def side(source: list) -> int:
    return len(source)

@step(timeout=1.0)
def fragile(source: list) -> list:
    if MODE == "raise":
        raise ValueError("sensor 7 reported nonsense")
    if MODE == "kill":
        os.kill(os.getpid(), 9)
    if MODE == "hang":
        import time
        time.sleep(120)
    if MODE == "bad-output":
        return object()
    return source

@step
def after(fragile: list) -> int:
    return sum(fragile)

pipeline = Pipeline("failing", [source, side, fragile, after])
"""


def _failing(ws: Workspace, mode: str) -> Path:
    return _write(ws, "failing.py", FAILING.replace('MODE = "raise"', f'MODE = "{mode}"'))


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("raise", "ValueError: sensor 7 reported nonsense"),
        ("kill", "worker was killed by SIGKILL"),
        ("hang", "timed out after 1 s and was killed"),
        (
            "bad-output",
            "step 'fragile' output 'fragile': cannot store it: no safe serializer "
            "for type builtins.object",
        ),
    ],
)
def test_a_failing_step_fails_the_run_and_skips_downstream(
    sqlite_workspace: Workspace, mode: str, message: str
) -> None:
    ws = sqlite_workspace
    result = run_pipeline(_failing(ws, mode), workspace=ws, jobs=2)
    assert result.status == "failed"
    assert _statuses(result) == {
        "source": "finished",
        "side": "finished",
        "fragile": "failed",
        "after": "skipped",
    }
    fragile = result.step("fragile")
    assert message in (fragile.error or "")
    assert fragile.outputs is None  # nothing published
    assert message in (result.error or "")
    assert ws.store.runs.get(fragile.run_id or "").status == "failed"
    assert ws.store.runs.get(result.id).status == "failed"
    assert ws.store.runs.artifacts(fragile.run_id or "") == []


def test_resume_reruns_only_what_did_not_finish(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    failed = run_pipeline(_failing(ws, "raise"), workspace=ws)
    assert failed.status == "failed"
    _failing(ws, "fixed")
    resumed = resume_pipeline(failed.id[:10], workspace=ws, use_cache=False)
    assert resumed.status == "finished", resumed.error
    assert resumed.resumed_from == failed.id
    assert _statuses(resumed) == {
        "source": "reused",
        "side": "reused",
        "fragile": "finished",
        "after": "finished",
    }
    assert resumed.step("source").run_id == failed.step("source").run_id


def test_retries_with_backoff(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    path = _write(
        ws,
        "flaky.py",
        """
        from pathlib import Path
        from modelyard.pipeline import Pipeline, step

        @step(retries=2, retry_delay=0.01)
        def flaky(marker: str = "attempts.txt") -> int:
            p = Path(marker)
            n = int(p.read_text()) + 1 if p.exists() else 1
            p.write_text(str(n))
            if n < 2:
                raise RuntimeError(f"attempt {n} failed")
            return n

        pipeline = Pipeline("flaky", [flaky])
        """,
    )
    result = run_pipeline(path, workspace=ws)
    assert result.status == "finished"
    assert result.step("flaky").attempts == 2


PARALLEL = """
import json, time
from pathlib import Path
from modelyard.pipeline import Pipeline, step

def _record(name):
    start = time.time()
    time.sleep(0.5)
    Path(f"{name}.json").write_text(json.dumps([start, time.time()]))

@step
def left() -> int:
    _record("left")
    return 1

@step
def right() -> int:
    _record("right")
    return 2

@step
def join(left: int, right: int) -> int:
    return left + right

pipeline = Pipeline("parallel", [left, right, join])
"""


def test_jobs_run_independent_steps_at_once(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    path = _write(ws, "parallel.py", PARALLEL)
    result = run_pipeline(path, workspace=ws, jobs=2)
    assert result.status == "finished"
    (s1, e1), (s2, e2) = (
        json.loads((ws.root / f"{n}.json").read_text()) for n in ("left", "right")
    )
    assert max(s1, s2) < min(e1, e2), "the two steps did not overlap"
    serial = run_pipeline(path, workspace=ws, jobs=1, use_cache=False)
    (s1, e1), (s2, e2) = (
        json.loads((ws.root / f"{n}.json").read_text()) for n in ("left", "right")
    )
    assert serial.status == "finished"
    assert max(s1, s2) >= min(e1, e2), "with --jobs 1 the steps must not overlap"


def test_in_process_runner_runs_the_same_steps(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    path = _write(ws, "chain.py", CHAIN)
    result = run_pipeline(path, workspace=ws, runner=InProcessRunner())
    assert result.status == "finished", result.error
    report = result.step("report").outputs or {}
    assert json.loads(ws.artifacts.get_bytes(report["report"]["digest"])) == {"total": 6}


def test_a_runner_that_breaks_mid_step_leaves_no_running_step_run(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    """Found in review: an engine lost mid-step left the step's tracked run 'running'."""
    from modelyard.errors import EngineUnavailable

    class LostEngine:
        name = "lost"

        def prepare(self, workspace_root: Path, pipeline_file: Path) -> None:
            return None

        def execute(self, task_path: Path, *, timeout: float | None, log_path: Path) -> object:
            raise EngineUnavailable("the engine at unix:///var/run/docker.sock went away")

    path = _write(sqlite_workspace, "one.py", """
        from modelyard.pipeline import Pipeline, step

        @step
        def a() -> int:
            return 1

        pipeline = Pipeline("one", [a])
        """)  # fmt: skip
    run = run_pipeline(path, workspace=sqlite_workspace, runner=LostEngine())  # type: ignore[arg-type]
    assert run.status == "failed"
    steps = sqlite_workspace.store.runs.search(pipeline="one", parent_id=run.id)
    assert [s.status for s in steps] == ["failed"]
    assert "went away" in (steps[0].error or "")


SEES_ITS_WORKSPACE = """
import os
import time
from pathlib import Path

from modelyard.pipeline import Pipeline, step
from modelyard.workspace import Workspace, current, resolve

RENDEZVOUS = Path({rendezvous!r})


def _seen(name: str) -> dict:
    # Wait until every step of both pipelines is running, so they overlap for certain.
    (RENDEZVOUS / (current().root.name + "-" + name)).touch()
    deadline = time.monotonic() + 60
    while len(list(RENDEZVOUS.iterdir())) < {peers}:
        if time.monotonic() > deadline:
            raise TimeoutError("the other steps never started")
        time.sleep(0.01)
    return {{
        "find": str(Workspace.find().root),
        "resolve": str(resolve(None).root),
        "current": str(current().root),
        "environ": os.environ.get("MODELYARD_WORKSPACE"),
    }}

def _step(name: str):
    def sees() -> dict:
        return _seen(name)

    return step(name=name, cache=False)(sees)

pipeline = Pipeline("sees", [_step(name) for name in "abcd"])
"""


def test_parallel_in_process_steps_see_their_workspace_and_leave_the_environment(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    """Found on main: with ``-j 2`` one in-process step saw ``MODELYARD_WORKSPACE`` missing,
    and afterwards the host kept every ``MODELYARD_*`` variable. Two pipelines in two
    workspaces run at once, each with ``-j 4``: all eight steps overlap, each sees its own
    workspace (none through the environment), and ``os.environ`` is unchanged to the byte."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    other, _ = Workspace.init(tmp_path / "other", environ={})
    rendezvous = tmp_path / "rendezvous"
    rendezvous.mkdir()
    source = SEES_ITS_WORKSPACE.format(rendezvous=str(rendezvous), peers=8)
    before = dict(os.environb)
    with other, ThreadPoolExecutor(2) as pool:
        runs = {
            ws.root: pool.submit(
                run_pipeline,
                _write(ws, "sees.py", source),
                workspace=ws,
                jobs=4,
                runner=InProcessRunner(),
            )
            for ws in (sqlite_workspace, other)
        }
        for ws in (sqlite_workspace, other):
            result = runs[ws.root].result()
            assert result.status == "finished", result.error
            for name in "abcd":
                digest = (result.step(name).outputs or {})[name]["digest"]
                seen = json.loads(ws.artifacts.get_bytes(digest))
                root = str(ws.root)
                assert seen == {"find": root, "resolve": root, "current": root, "environ": None}
    assert len(list(rendezvous.iterdir())) == 8
    assert dict(os.environb) == before
