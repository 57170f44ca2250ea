"""Each step in its own image: ``@step(image=..., requirements=...)`` and
``[pipeline.steps.NAME]``, for the docker runner and the Argo and Kubeflow compilers; the
docker runner's default requirements; ``pipeline resume`` keeping the original run's runner."""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from modelyard.cli.main import cli
from modelyard.errors import ConfigError, InvalidValue
from modelyard.pipeline import step
from modelyard.pipeline.argo import compile_argo
from modelyard.pipeline.graph import build_graph
from modelyard.pipeline.loader import load_pipeline
from modelyard.pipeline.runners.docker import DockerRunner
from modelyard.pipeline.step_images import (
    StepEnvironment,
    base_image_of,
    detect_requirements,
    own_requirements,
    pushed_images,
    record_pushed,
    step_environments,
    step_image_key,
    with_implied,
)
from modelyard.workspace import Workspace

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "maintenance"

SOURCE = """
import importlib.util
from modelyard.pipeline import Pipeline, step

def has(module):
    return importlib.util.find_spec(module) is not None

@step
def shared() -> dict:
    from sklearn.linear_model import LinearRegression  # makes the shared image hold sklearn
    return {"sklearn": has("sklearn"), "skops": has("skops"), "jsonschema": has("jsonschema")}

@step(requirements=["jsonschema"], image=None)
def own(shared: dict) -> dict:
    return {"sklearn": has("sklearn"), "jsonschema": has("jsonschema"), "before": shared}

@step(image="registry.example/prebuilt:1")
def prebuilt(own: dict) -> dict:
    return own

pipeline = Pipeline("images", [shared, own, prebuilt])
"""


@pytest.fixture
def pipeline_file(sqlite_workspace: Workspace) -> Path:
    path = sqlite_workspace.root / "images.py"
    path.write_text(textwrap.dedent(SOURCE))
    return path


def _config(ws: Workspace, text: str) -> Workspace:
    config = ws.root / "modelyard.toml"
    config.write_text(config.read_text() + textwrap.dedent(text))
    return Workspace.at(ws.root, {})


def test_the_decorator_and_the_table_give_each_step_its_environment(
    pipeline_file: Path, sqlite_workspace: Workspace
) -> None:
    graph = build_graph(load_pipeline(pipeline_file))
    assert step_environments(sqlite_workspace, graph) == {
        "shared": StepEnvironment(),
        "own": StepEnvironment(requirements=("jsonschema",)),
        "prebuilt": StepEnvironment(image="registry.example/prebuilt:1"),
    }
    ws = _config(
        sqlite_workspace,
        """
        [pipeline.steps.own]
        image = "registry.example/own:2"

        [pipeline.steps.prebuilt]
        image = "registry.example/prebuilt:3"
        requirements = ["pyyaml>=6"]
        """,
    )
    envs = step_environments(ws, graph)
    # the table wins key by key: own keeps the decorator's requirements, gets the image
    assert envs["own"] == StepEnvironment("registry.example/own:2", ("jsonschema",))
    assert envs["prebuilt"] == StepEnvironment("registry.example/prebuilt:3", ("pyyaml>=6",))


@pytest.mark.parametrize(
    ("table", "message"),
    [
        ('image = "bad image; rm -rf /"', "image"),
        ("image = 3", "must be a string"),
        ('requirements = "scikit-learn"', "must be a list"),
        ('requirements = ["pkg @ https://example.com/pkg.whl"]', "no URL or marker"),
        ('requirements = ["not a requirement!"]', "is not a requirement"),
        ('imgae = "x:1"', "unknown key 'imgae'"),
    ],
)
def test_bad_step_settings_are_refused_naming_the_table(
    pipeline_file: Path, sqlite_workspace: Workspace, table: str, message: str
) -> None:
    ws = _config(sqlite_workspace, f"\n[pipeline.steps.own]\n{table}\n")
    with pytest.raises((ConfigError, InvalidValue), match=message) as caught:
        step_environments(ws, build_graph(load_pipeline(pipeline_file)))
    assert "[pipeline.steps.own]" in str(caught.value)


def test_bad_decorator_arguments_fail_at_definition() -> None:
    with pytest.raises(InvalidValue, match="must be a list"):
        step(requirements="scikit-learn")  # type: ignore[arg-type]
    with pytest.raises(InvalidValue, match="image"):
        step(image="Not A Valid Ref")


def test_compiled_pipelines_use_each_steps_image_and_refuse_unbuildable_ones(
    pipeline_file: Path, sqlite_workspace: Workspace
) -> None:
    # "own" has requirements and no image: a cluster cannot build it
    with pytest.raises(ConfigError, match=r"step 'own' has requirements of its own but no image"):
        compile_argo(pipeline_file, workspace=sqlite_workspace, allow_local_state=True)
    ws = _config(sqlite_workspace, '\n[pipeline.steps.own]\nimage = "registry.example/own:2"\n')
    manifest = compile_argo(
        pipeline_file, workspace=ws, image="registry.example/shared:1", allow_local_state=True
    )
    images = {
        t["name"]: t["container"]["image"]
        for t in manifest["spec"]["templates"]
        if "container" in t
    }
    assert images == {
        "modelyard-start": "registry.example/shared:1",
        "modelyard-finish": "registry.example/shared:1",
        "step-shared": "registry.example/shared:1",
        "step-own": "registry.example/own:2",
        "step-prebuilt": "registry.example/prebuilt:1",
    }


PUSHED = "127.0.0.1:5000/team/modelyard-step/ws@sha256:" + "ab" * 32


def _step_images(manifest: dict[str, Any]) -> dict[str, str]:
    return {
        t["name"]: t["container"]["image"]
        for t in manifest["spec"]["templates"]
        if "container" in t
    }


def test_a_step_image_that_build_images_pushed_is_compiled_by_digest(
    pipeline_file: Path, sqlite_workspace: Workspace
) -> None:
    """Never pushed: refused, naming the command; pushed: used as REPO@DIGEST; the step's
    requirements or the project's code changed since: refused again, naming the registry."""
    with pytest.raises(ConfigError) as never:
        compile_argo(pipeline_file, workspace=sqlite_workspace, allow_local_state=True)
    assert "never built and pushed" in str(never.value)
    assert f"modelyard pipeline build-images {pipeline_file} --registry HOST[/PREFIX]" in str(
        never.value
    )
    key = step_image_key(
        pipeline_file, base_image_of(sqlite_workspace), own_requirements(["jsonschema"])
    )
    record_pushed(sqlite_workspace, key, PUSHED, ["own"], own_requirements(["jsonschema"]))
    manifest = compile_argo(
        pipeline_file, workspace=sqlite_workspace, image="r.example/s:1", allow_local_state=True
    )
    assert _step_images(manifest)["step-own"] == PUSHED
    assert _step_images(manifest)["step-shared"] == "r.example/s:1"

    stale = f"modelyard pipeline build-images {pipeline_file} --registry 127.0.0.1:5000/team"
    ws = _config(sqlite_workspace, '\n[pipeline.steps.own]\nrequirements = ["pyyaml"]\n')
    with pytest.raises(ConfigError, match="before its requirements or the project's code") as new:
        compile_argo(pipeline_file, workspace=ws, allow_local_state=True)
    assert stale in str(new.value)
    assert PUSHED in str(new.value)
    pipeline_file.write_text(pipeline_file.read_text() + "\n# changed\n")
    with pytest.raises(ConfigError, match="before its requirements") as edited:
        compile_argo(pipeline_file, workspace=sqlite_workspace, allow_local_state=True)
    assert stale in str(edited.value)


def test_a_damaged_record_of_pushed_images_is_a_clear_error(
    pipeline_file: Path, sqlite_workspace: Workspace
) -> None:
    (sqlite_workspace.state_dir / "step-images.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not readable JSON"):
        compile_argo(pipeline_file, workspace=sqlite_workspace, allow_local_state=True)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--registry", "Bad Registry!"], "registry"),
        (["--registry", "127.0.0.1:5000", "--password-stdin"], "without a user name"),
    ],
)
def test_build_images_refuses_bad_input_before_building_anything(
    pipeline_file: Path, sqlite_workspace: Workspace, args: list[str], message: str
) -> None:
    result = CliRunner().invoke(
        cli, ["pipeline", "build-images", str(pipeline_file), *args], input="secret\n"
    )
    assert result.exit_code != 0
    assert message in result.output
    assert "Traceback" not in result.output
    assert pushed_images(sqlite_workspace) == {}


def test_the_orchestrator_hands_a_steps_own_environment_to_the_runner(
    pipeline_file: Path, sqlite_workspace: Workspace
) -> None:
    """The task file carries the step's environment; the shared steps' have none."""
    result = CliRunner().invoke(cli, ["pipeline", "run", str(pipeline_file), "--in-process"])
    assert result.exit_code == 0, result.output
    tasks = {
        json.loads(p.read_text())["step"]: json.loads(p.read_text())
        for p in (sqlite_workspace.state_dir / "pipeline-runs").glob("*/*/attempt-1/task.json")
    }
    assert "environment" not in tasks["shared"]
    assert tasks["own"]["environment"] == {"image": None, "requirements": ["jsonschema"]}
    assert tasks["prebuilt"]["environment"] == {
        "image": "registry.example/prebuilt:1",
        "requirements": [],
    }


def test_the_docker_runners_default_requirements_are_what_the_code_imports() -> None:
    """Found on main: a first docker run of the maintenance pipeline failed three times
    (sklearn, skops, orjson missing) until [docker] requirements listed them. Now the shared
    image holds what the project's code imports, skops with scikit-learn, and orjson comes with
    modelyard itself."""
    found = detect_requirements(sorted(EXAMPLE.glob("*.py")))
    assert {"scikit-learn", "pandas", "numpy"} <= set(found)
    assert "modelyard" not in found
    runner = DockerRunner(engine=object())  # type: ignore[arg-type]
    shared = runner.shared_requirements(EXAMPLE / "pipeline.py")
    assert shared[0] == "modelyard"
    assert "scikit-learn" in shared
    assert "skops" in shared
    from modelyard.images import lock_from_environment

    lock = lock_from_environment(["modelyard"], exclude=())
    assert "orjson" in {name.lower() for name in lock}


def test_listed_requirements_get_what_modelyard_needs_for_their_values() -> None:
    assert with_implied(["modelyard", "scikit-learn"]) == ("modelyard", "scikit-learn", "skops")
    assert with_implied(["modelyard", "scikit-learn", "skops"]).count("skops") == 1
    assert with_implied(["modelyard", "click"]) == ("modelyard", "click")


def test_a_steps_prebuilt_image_is_used_by_the_docker_runner() -> None:
    runner = DockerRunner(engine=object(), image="registry.example/shared:1")  # type: ignore[arg-type]
    assert runner.image_for({"step": "a"}) == "registry.example/shared:1"
    own = {"step": "b", "environment": {"image": "registry.example/b:1", "requirements": []}}
    assert runner.image_for(own) == "registry.example/b:1"
    args = runner.run_args(
        {"workspace_root": "/ws", "artifact_root": "/ws/a", "step": "b"},
        Path("/ws/t/task.json"),
        "c1",
        "registry.example/b:1",
    )
    assert args[args.index("python") + 1] == "registry.example/b:1"


FLAKY = """
from pathlib import Path
from modelyard.pipeline import Pipeline, step

@step
def first() -> int:
    return 1

@step
def second(first: int) -> int:
    if not Path("ok").exists():
        raise RuntimeError("not yet")
    return first + 1

pipeline = Pipeline("flaky", [first, second])
"""


def test_resume_keeps_the_original_runs_runner(sqlite_workspace: Workspace) -> None:
    """Found on main: `pipeline resume` ran every resumed run in local subprocesses, whatever
    the original used (a docker run resumed outside its containers)."""
    path = sqlite_workspace.root / "flaky.py"
    path.write_text(textwrap.dedent(FLAKY))
    runner = CliRunner()
    failed = runner.invoke(cli, ["pipeline", "run", str(path), "--in-process"])
    assert failed.exit_code != 0
    (original,) = sqlite_workspace.store.pipelines.list("flaky")
    assert original.runner == "in-process"
    (sqlite_workspace.root / "ok").write_text("")
    resumed = runner.invoke(cli, ["pipeline", "resume", original.id])
    assert resumed.exit_code == 0, resumed.output
    newest = sqlite_workspace.store.pipelines.list("flaky")[0]
    assert newest.resumed_from == original.id
    assert newest.runner == "in-process"
    # --runner still chooses
    (sqlite_workspace.root / "ok").unlink()
    runner.invoke(cli, ["pipeline", "run", str(path), "--in-process"])
    again = sqlite_workspace.store.pipelines.list("flaky")[0]
    (sqlite_workspace.root / "ok").write_text("")
    chosen = runner.invoke(cli, ["pipeline", "resume", again.id, "--runner", "local"])
    assert chosen.exit_code == 0, chosen.output
    assert sqlite_workspace.store.pipelines.list("flaky")[0].runner == "local"


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(1200)  # builds two step images (scikit-learn's wheels) on a shared machine
def test_each_step_runs_in_an_image_holding_only_its_own_requirements(
    engine: object, base_image: str, pipeline_file: Path, sqlite_workspace: Workspace
) -> None:
    """The docker runner builds the shared image from what the code imports (scikit-learn,
    so skops too) and "own"'s image from modelyard and jsonschema alone; "prebuilt" runs in
    the image it names (here: own's, tagged)."""
    from modelyard.pipeline.run import run_pipeline

    runner = DockerRunner(engine=engine, base_image=base_image)  # type: ignore[arg-type]
    ws = _config(
        sqlite_workspace, '\n[pipeline.steps.prebuilt]\nimage = "modelyard-test/prebuilt:1"\n'
    )
    # "prebuilt" must exist locally: tag the shared image under its name once it is built
    runner.prepare(ws.root, pipeline_file)
    assert runner.image is not None
    engine.run(["tag", runner.image, "modelyard-test/prebuilt:1"])  # type: ignore[attr-defined]
    try:
        run = run_pipeline(pipeline_file, workspace=ws, runner=runner)
        assert run.status == "finished", run.error
        digest = run.step("prebuilt").outputs["prebuilt"]["digest"]  # type: ignore[index]
        seen = json.loads(ws.artifacts.get_bytes(digest))
        assert seen["before"] == {"sklearn": True, "skops": True, "jsonschema": False}
        assert seen["sklearn"] is False
        assert seen["jsonschema"] is True
        ((requirements, image),) = runner._own_images.items()
        assert "jsonschema" in requirements
        assert "scikit-learn" not in requirements
        assert image != runner.image
    finally:
        engine.run(["rmi", "modelyard-test/prebuilt:1"], check=False)  # type: ignore[attr-defined]
        ws.close()


@pytest.mark.docker
@pytest.mark.slow
@pytest.mark.timeout(1200)  # builds own's image (cached by the test above in the same session)
def test_build_images_pushes_each_steps_image_and_compiled_pipelines_name_its_digest(
    engine: Any,
    base_image: str,
    open_registry: str,
    pipeline_file: Path,
    sqlite_workspace: Workspace,
) -> None:
    """`pipeline build-images` against the real registry; the digest it recorded is the one
    the registry serves, and both the Argo workflow and the KFP spec (compiled by the real CLI
    in the kfp venv) run "own" in it."""
    import sys

    import yaml

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _client_venvs import client_python

    registry = f"{open_registry}/build-images-{uuid.uuid4().hex[:8]}"
    built = CliRunner().invoke(
        cli, ["pipeline", "build-images", str(pipeline_file), "--registry", registry]
    )
    assert built.exit_code == 0, built.output
    ((ref, steps),) = [(e["ref"], e["steps"]) for e in pushed_images(sqlite_workspace).values()]
    assert steps == ["own"]
    repo, digest = ref.split("@")
    assert repo == f"{registry}/modelyard-step/ws"
    head = urllib.request.Request(
        f"http://{open_registry}/v2/{repo.split('/', 1)[1]}/manifests/{digest}",
        method="HEAD",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(head, timeout=30) as answer:
        assert answer.headers["Docker-Content-Digest"] == digest
    try:
        manifest = compile_argo(
            pipeline_file, workspace=sqlite_workspace, image="r.example/s:1", allow_local_state=True
        )
        assert _step_images(manifest)["step-own"] == ref
        kfp = client_python("kfp")
        spec = subprocess.run(
            [str(kfp.parent / "modelyard"), "pipeline", "compile", pipeline_file.name]
            + ["--target", "kubeflow", "--allow-local-state", "--image", "r.example/s:1"],
            cwd=sqlite_workspace.root,
            env={k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert spec.returncode == 0, spec.stderr
        executors = yaml.safe_load_all(spec.stdout).__next__()["deploymentSpec"]["executors"]
        images = {
            e["container"]["args"][e["container"]["args"].index("--step") + 1]: e["container"][
                "image"
            ]
            for e in executors.values()
            if "--step" in e["container"]["args"]
        }
        assert images == {
            "shared": "r.example/s:1",
            "own": ref,
            "prebuilt": "registry.example/prebuilt:1",
        }
    finally:
        listed = engine.run(["images", "--format", "{{.Repository}}:{{.Tag}}", repo])
        for tag in listed.stdout.decode().split():
            engine.run(["rmi", "--no-prune", tag], check=False)
