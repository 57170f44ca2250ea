"""Eight processes tracking runs into one store at once: no "database is locked", no lost row."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest
import sqlalchemy as sa

from modelyard.workspace import Workspace

PROCESSES = 8
RUNS_EACH = 5
METRICS_EACH = 200
PARAMS_EACH = 3

_WORKER = textwrap.dedent(
    f"""
    import sys
    from modelyard.tracking import start_run
    from modelyard.workspace import Workspace

    worker = int(sys.argv[1])
    with Workspace.find() as ws:  # MODELYARD_WORKSPACE and MODELYARD_STORE_URL from the parent
        for r in range({RUNS_EACH}):
            with start_run(name=f"w{{worker}}-{{r}}", pipeline="load", workspace=ws,
                           flush_every=50) as run:
                run.log_params({{f"p{{i}}": worker * 100 + i for i in range({PARAMS_EACH})}})
                run.set_tag("worker", str(worker))
                for step in range({METRICS_EACH}):
                    run.log_metric("loss", 1.0 / (step + 1))
    """
)


@pytest.mark.slow
def test_eight_processes_lose_nothing(workspace: Workspace) -> None:
    env = {**os.environ, "MODELYARD_WORKSPACE": str(workspace.root)}
    env["MODELYARD_STORE_URL"] = workspace.settings.store_url
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(i)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(PROCESSES)
    ]
    failures = []
    for proc in procs:
        out, err = proc.communicate(timeout=240)
        if proc.returncode != 0:
            failures.append(
                err.strip().splitlines()[-1] if err.strip() else f"exit {proc.returncode}"
            )
    assert failures == []

    runs = workspace.store.runs.search(limit=1000, pipeline="load")
    assert len(runs) == PROCESSES * RUNS_EACH
    assert {r.status for r in runs} == {"finished"}
    assert {r.name for r in runs} == {
        f"w{w}-{r}" for w in range(PROCESSES) for r in range(RUNS_EACH)
    }
    assert workspace.store.runs.count_metrics() == PROCESSES * RUNS_EACH * METRICS_EACH
    with workspace.store.db.engine.connect() as conn:
        params = conn.execute(sa.text("SELECT count(*) FROM run_params")).scalar_one()
        tags = conn.execute(sa.text("SELECT count(*) FROM run_tags")).scalar_one()
    assert params == PROCESSES * RUNS_EACH * PARAMS_EACH
    assert tags == PROCESSES * RUNS_EACH
    for run in runs:  # every run's own series is complete and ordered
        assert run.latest_metrics == {"loss": 1.0 / METRICS_EACH}
