"""The docker runner: each pipeline step in a container of its own, from a step image built
offline; and the error when no engine answers."""

from __future__ import annotations

import json
import os
import textwrap
from pathlib import Path

import pytest

from conftest import require_service
from modelyard.errors import EngineUnavailable
from modelyard.images import DockerEngine
from modelyard.pipeline.run import make_runner, run_pipeline
from modelyard.pipeline.runners.base import Runner
from modelyard.pipeline.runners.docker import DockerRunner, _mounts, _signal_code
from modelyard.workspace import Workspace

TWO_STEPS = """
import os, re
from pathlib import Path
from modelyard.pipeline import Pipeline, step

def container_id():
    found = re.search(r"/containers/([0-9a-f]{64})/", Path("/proc/self/mountinfo").read_text())
    return found.group(1) if found else None

@step
def where() -> dict:
    return {"container": container_id(), "uid": os.getuid()}

@step
def again(where: dict) -> dict:
    return {"first": where, "container": container_id(), "uid": os.getuid()}

pipeline = Pipeline("two", [where, again])
"""


def test_runner_is_found_by_name_and_speaks_the_protocol(sqlite_workspace: Workspace) -> None:
    runner = make_runner("docker", sqlite_workspace)
    assert isinstance(runner, DockerRunner)
    assert isinstance(runner, Runner)


def test_workspace_config_reaches_the_runner(tmp_path: Path) -> None:
    (tmp_path / "modelyard.toml").write_text(
        '[docker]\nbase_image = "registry.local:5000/base:1"\nrequirements = ["click"]\n'
        'network = "bridge"\n'
    )
    runner = DockerRunner.from_workspace(Workspace.at(tmp_path, {}))
    assert runner.base_image == "registry.local:5000/base:1"
    assert runner.requirements == ("modelyard", "click")
    assert runner.network == "bridge"


def test_no_engine_fails_naming_the_socket(sqlite_workspace: Workspace, tmp_path: Path) -> None:
    socket_url = f"unix://{tmp_path}/missing-docker.sock"
    engine = DockerEngine.from_env({"DOCKER_HOST": socket_url, "PATH": "/usr/local/bin:/usr/bin"})
    path = sqlite_workspace.root / "two.py"
    path.write_text(textwrap.dedent(TWO_STEPS))
    with pytest.raises(EngineUnavailable, match=f"no Docker engine reachable at {socket_url}"):
        run_pipeline(path, workspace=sqlite_workspace, runner=DockerRunner(engine=engine))


def test_mounts_cover_workspace_store_and_artifacts_once(tmp_path: Path) -> None:
    ws = tmp_path / "ws"
    task = {
        "workspace_root": str(ws),
        "artifact_root": str(ws / ".modelyard" / "artifacts"),
        "store_url": f"sqlite:///{tmp_path}/elsewhere/db.sqlite",
    }
    mounts = _mounts(task, ws / ".modelyard" / "pipeline-runs" / "r" / "s" / "task.json")
    assert sorted(mounts) == sorted([str(ws.resolve()), str((tmp_path / "elsewhere").resolve())])


def test_container_signal_exit_maps_to_negative_code() -> None:
    assert _signal_code(137) == -9
    assert (_signal_code(0), _signal_code(1), _signal_code(125)) == (0, 1, 125)


@pytest.mark.docker
@pytest.mark.slow
def test_two_step_pipeline_runs_each_step_in_its_own_container(
    sqlite_workspace: Workspace,
) -> None:
    engine = DockerEngine.from_env()
    try:
        engine.ping()
    except EngineUnavailable as exc:
        require_service(False, str(exc))
    path = sqlite_workspace.root / "two.py"
    path.write_text(textwrap.dedent(TWO_STEPS))
    runner = DockerRunner(engine=engine)

    run = run_pipeline(path, workspace=sqlite_workspace, runner=runner)

    assert run.status == "finished", run.error
    assert {s.step: s.status for s in run.steps} == {"where": "finished", "again": "finished"}
    assert runner.image is not None
    assert runner.image.startswith("modelyard-step/ws:")
    digest = run.step("again").outputs["again"]["digest"]  # type: ignore[index]
    result = json.loads(sqlite_workspace.artifacts.get_bytes(digest))
    # both ran in containers, different ones, and the second read the first's output
    assert result["container"] is not None
    assert result["first"]["container"] is not None
    assert result["container"] != result["first"]["container"]
    # as the host user, so what it writes into the workspace belongs to that user
    assert result["uid"] == result["first"]["uid"] == os.getuid()
    # no container is left behind
    left = engine.run(["ps", "-aq", "--filter", "label=io.modelyard.kind=pipeline-step"])
    assert left.stdout.strip() == b""
