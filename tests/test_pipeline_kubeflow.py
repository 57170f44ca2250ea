"""``pipeline compile --target kubeflow``: a KFP v2 pipeline spec written by the kfp SDK's own
compiler, loaded back and validated with kfp's protobuf schemas, and the maintenance pipeline
run end to end by ``kfp.local`` (DockerRunner) with its steps recorded as modelyard runs.

kfp pins ``kubernetes<31`` while the dev venv has ``kubernetes>=36``, so kfp lives in a venv of
its own (``tests/_client_venvs.py``) holding this checkout (editable, ``[kubeflow]`` extra): the
compile runs there through the real CLI, and so do the checks that load the spec with kfp.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from modelyard.cli.main import cli
from modelyard.pipeline.kfp_run import final_status, kfp_run_id
from modelyard.workspace import Workspace

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _client_venvs import client_python

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "maintenance"
SHARED = """
[pipeline.kubeflow]
image = "registry.example/maintenance-steps:1"
store_secret = "modelyard-store"
artifacts_claim = "modelyard-artifacts"
"""

# Loads a compiled spec back with kfp and prints what the tests check, as JSON. Validation:
# kfp's loader (a component usable in another pipeline), json_format.ParseDict into kfp's own
# PipelineSpec and kfp-kubernetes' KubernetesExecutorConfig protos (an unknown or mistyped
# field fails), and a second compile of the loaded component by kfp's compiler.
INSPECT = r"""
import json, sys, tempfile, yaml
from google.protobuf import json_format
from kfp import compiler, components, dsl
from kfp.pipeline_spec import pipeline_spec_pb2
from kfp.kubernetes import kubernetes_executor_config_pb2 as k8s_pb2

path = sys.argv[1]
docs = list(yaml.safe_load_all(open(path)))
spec = json_format.ParseDict(docs[0], pipeline_spec_pb2.PipelineSpec())
platform = {}
if len(docs) > 1:
    platform_spec = json_format.ParseDict(docs[1], pipeline_spec_pb2.PlatformSpec())
    executors = docs[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    for label, config in executors.items():
        json_format.ParseDict(config, k8s_pb2.KubernetesExecutorConfig())
        platform[label] = config
loaded = components.load_component_from_file(path)

@dsl.pipeline(name="wrapper")
def wrapper():
    loaded()

with tempfile.NamedTemporaryFile(suffix=".yaml") as again:
    compiler.Compiler().compile(wrapper, again.name)

def tasks(dag):
    return {name: {"component": t["componentRef"]["name"],
                   "after": t.get("dependentTasks", []),
                   "inputs": t.get("inputs", {}).get("parameters", {}),
                   "caching": t.get("cachingOptions", {}),
                   "retry": t.get("retryPolicy"),
                   "trigger": t.get("triggerPolicy", {})}
            for name, t in dag["tasks"].items()}

doc = docs[0]
print(json.dumps({
    "name": spec.pipeline_info.name,
    "loaded": loaded.name,
    "inputs": doc["root"].get("inputDefinitions", {}).get("parameters", {}),
    "root": tasks(doc["root"]["dag"]),
    "dags": {n: tasks(c["dag"]) for n, c in doc["components"].items() if "dag" in c},
    "components": {n: c.get("executorLabel") for n, c in doc["components"].items()},
    "executors": {n: e["container"] for n, e in doc["deploymentSpec"]["executors"].items()},
    "platform": platform,
}))
"""


@pytest.fixture(scope="session")
def kfp_python() -> Path:
    """A venv with this checkout's ``[kubeflow]`` extra (kfp, kfp-kubernetes, docker)."""
    return client_python("kfp")


def _workspace(tmp_path: Path, config: str = SHARED) -> Path:
    root = tmp_path / "ws"
    ws, _ = Workspace.init(root, environ={})
    ws.close()
    (root / "modelyard.toml").write_text((root / "modelyard.toml").read_text() + config)
    shutil.copy(EXAMPLE / "pipeline.py", root / "pipeline.py")
    return root


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}


def _compile(python: Path, root: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    modelyard = python.parent / "modelyard"
    args = [str(modelyard), "pipeline", "compile", "pipeline.py", "--target", "kubeflow", *extra]
    return subprocess.run(args, cwd=root, env=_env(), capture_output=True, text=True, timeout=300)


def _inspect(python: Path, spec: Path) -> dict[str, Any]:
    done = subprocess.run(
        [str(python), "-c", INSPECT, str(spec)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    loaded: dict[str, Any] = json.loads(done.stdout.splitlines()[-1])
    return loaded


def _step_of(container: Mapping[str, Any]) -> str:
    args = container["args"]
    if "--step" in args:
        return str(args[args.index("--step") + 1])
    return str(args[0])  # --kfp-start / --kfp-finish


@pytest.mark.slow
@pytest.mark.timeout(1500)  # the first test installs kfp's venv (minutes, once)
def test_compile_writes_a_kfp_spec_with_one_container_component_per_step(
    kfp_python: Path, tmp_path: Path
) -> None:
    root = _workspace(tmp_path)
    out = root / "maintenance.yaml"
    done = _compile(kfp_python, root, "-o", str(out), "-p", "n_estimators=50")
    assert done.returncode == 0, done.stderr + done.stdout
    assert "wrote Kubeflow pipeline spec to" in done.stdout
    spec = _inspect(kfp_python, out)
    assert spec["name"] == spec["loaded"] == "maintenance"

    steps = ["collect", "validate", "prepare", "train", "evaluate", "register", "featurize"]
    steps.append("predict")
    by_label = {label: _step_of(c) for label, c in spec["executors"].items()}
    # one container component per step, plus the start task and the exit handler
    assert sorted(by_label.values()) == sorted([*steps, "--kfp-start", "--kfp-finish"])
    for label, container in spec["executors"].items():
        assert container["command"] == ["python", "-m", "modelyard.pipeline.worker"]
        assert container["image"] == "registry.example/maintenance-steps:1"
        assert "--pipeline-file" in container["args"]
        assert container["args"][container["args"].index("--pipeline-file") + 1] == (
            "/workspace/pipeline.py"
        )
        env = {e["name"]: e["value"] for e in container["env"]}
        assert env == {"MODELYARD_WORKSPACE": "/workspace", "MODELYARD_ARTIFACT_ROOT": "/artifacts"}
        # the team's store and artifacts, as kfp-kubernetes platform settings
        platform = spec["platform"][label]
        (secret,) = platform["secretAsEnv"]
        assert secret["secretName"] == "modelyard-store"
        assert secret["keyToEnv"] == [{"secretKey": "url", "envVar": "MODELYARD_STORE_URL"}]
        assert [m["mountPath"] for m in platform["pvcMount"]] == ["/artifacts"]
        assert platform["pvcMount"][0]["constant"] == "modelyard-artifacts"

    # the DAG: every step's edges are its upstream steps; the first steps wait for the start
    (body,) = spec["dags"].values()
    step_of_task = {
        name: by_label[spec["components"][task["component"]]] for name, task in body.items()
    }
    edges = {
        step_of_task[name]: sorted(step_of_task[d] for d in task["after"])
        for name, task in body.items()
    }
    assert edges == {
        "--kfp-start": [],
        "collect": ["--kfp-start"],
        "validate": ["collect"],
        "prepare": ["validate"],
        "train": ["prepare"],
        "evaluate": ["prepare", "train"],
        "register": ["evaluate", "prepare", "train"],
        "featurize": ["collect", "validate"],
        "predict": ["featurize"],
    }
    for task in body.values():
        assert task["caching"] == {}  # KFP's cache off: a skipped pod would record nothing
    train = next(t for n, t in body.items() if step_of_task[n] == "train")
    assert set(train["inputs"]) == {
        "job_uuid",
        "job_name",
        "param_n_estimators",
        "param_max_depth",
        "param_seed",
        "upstream_0",
    }
    assert train["inputs"]["upstream_0"]["taskOutputParameter"]["outputParameterKey"] == "outputs"
    assert train["inputs"]["job_uuid"]["runtimeValue"]["constant"] == "{{$.pipeline_job_uuid}}"
    # pipeline parameters with the compiled defaults, typed
    assert spec["inputs"]["n_estimators"] == {
        "defaultValue": 50.0,
        "isOptional": True,
        "parameterType": "NUMBER_INTEGER",
    }
    assert spec["inputs"]["tolerance"]["parameterType"] == "NUMBER_DOUBLE"
    assert spec["inputs"]["incoming"]["parameterType"] == "STRING"
    # the exit handler closes the run whatever happened, with KFP's final status
    (finish,) = [t for n, t in spec["root"].items() if n.startswith("modelyard-finish")]
    assert finish["trigger"] == {"strategy": "ALL_UPSTREAM_TASKS_COMPLETED"}
    assert "taskFinalStatus" in finish["inputs"]["status"]


@pytest.mark.slow
@pytest.mark.timeout(1500)  # the first test installs kfp's venv (minutes, once)
def test_retries_and_timeouts_become_kfp_settings(kfp_python: Path, tmp_path: Path) -> None:
    root = _workspace(tmp_path, SHARED)
    (root / "pipeline.py").write_text(
        textwrap.dedent(
            """
            from modelyard.pipeline import Pipeline, step

            @step(retries=2, retry_delay=0.5, timeout=90.5)
            def numbers(n_rows: int = 3, flag: bool = True) -> list:
                return list(range(n_rows))

            pipeline = Pipeline("retry-demo", [numbers])
            """
        )
    )
    out = root / "spec.yaml"
    assert _compile(kfp_python, root, "-o", str(out)).returncode == 0
    spec = _inspect(kfp_python, out)
    (body,) = spec["dags"].values()
    (numbers,) = [t for n, t in body.items() if n.startswith("numbers")]
    assert numbers["retry"] == {
        "maxRetryCount": 2,
        "backoffDuration": "1s",  # KFP takes whole seconds: 0.5 s rounds up
        "backoffFactor": 2.0,
        "backoffMaxDuration": "3600s",
    }
    label = spec["components"][numbers["component"]]
    assert spec["platform"][label]["activeDeadlineSeconds"] == "91"
    assert spec["inputs"]["flag"]["parameterType"] == "BOOLEAN"


def test_compiling_for_kubeflow_without_shared_state_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _workspace(tmp_path, "")
    monkeypatch.chdir(root)
    args = ["pipeline", "compile", "pipeline.py", "--target", "kubeflow"]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1
    assert "every step's pod would get its own empty store" in refused.output
    assert "[pipeline.kubeflow]" in refused.output
    assert 'store_secret = "modelyard-store"' in refused.output


@pytest.mark.skipif(importlib.util.find_spec("kfp") is not None, reason="kfp is installed here")
def test_without_kfp_the_error_names_the_extra(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(_workspace(tmp_path))
    args = ["pipeline", "compile", "pipeline.py", "--target", "kubeflow"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1, result.output
    assert "pip install 'modelyard[kubeflow]'" in result.output


def test_run_ids_come_from_the_kfp_job() -> None:
    uuid = "0f3c9a1b-2d4e-4f60-8a7b-9c0d1e2f3a4b"
    assert kfp_run_id(uuid, "anything") == uuid.replace("-", "")
    # kfp.local's job id is a random number: the id is a digest of the job's name and it
    job = "maintenance-2026-12-03-17-00-00-000000"
    local = kfp_run_id("12345678", job)
    assert len(local) == 32
    assert local == kfp_run_id("12345678", job)
    assert local != kfp_run_id("12345678", job.replace("00-000000", "01-000000"))
    from modelyard.errors import ConfigError

    with pytest.raises(ConfigError, match="not a KFP job"):
        kfp_run_id("{{$.pipeline_job_uuid}}", "x")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"state": "SUCCEEDED", "error": {}}', ("SUCCEEDED", None)),
        (
            '{"state": "FAILED", "pipelineTaskName": "exit-handler-1", '
            '"error": {"code": 9, "message": "Task train failed."}}',
            ("FAILED", "Task train failed."),
        ),
        ("not json", ("FAILED", "unreadable final status 'not json'")),
        ("[1]", ("FAILED", "unreadable final status '[1]'")),
    ],
)
def test_the_final_status_is_read_from_kfps_json(text: str, expected: object) -> None:
    assert final_status(text) == expected


# Runs a compiled spec with kfp.local's DockerRunner as a KFP cluster would run its pods: the
# container's command replaces the image's entrypoint (Kubernetes' `command`; Docker needs
# entrypoint [""] for that), the store Secret's value arrives as MODELYARD_STORE_URL and the
# artifact claim is a host folder mounted at /artifacts (kfp.local ignores kfp-kubernetes
# settings), the project is at the workdir, and the host network reaches PostgreSQL.
RUN_LOCAL = r"""
import json, os, sys
import docker
from kfp import components, local

spec, pipeline_root, project, artifacts, store_url = sys.argv[1:6]
args = json.loads(sys.argv[6])
local.init(
    runner=local.DockerRunner(
        entrypoint=[""],
        network_mode="host",
        user=f"{os.getuid()}:{os.getgid()}",
        environment={"MODELYARD_STORE_URL": store_url, "HOME": "/tmp"},
        mounts=[
            docker.types.Mount("/workspace", project, type="bind"),
            docker.types.Mount("/artifacts", artifacts, type="bind"),
        ],
    ),
    pipeline_root=pipeline_root,
    raise_on_error=False,
)
pipeline = components.load_component_from_file(spec)
pipeline(**args)
print("kfp.local run returned")
"""


@pytest.fixture(scope="session")
def maintenance_step_image(engine: Any, base_image: str, tmp_path_factory: Any) -> str:
    """The shared step image the docker runner builds for the maintenance project with its
    default requirements (what the project's code imports), offline from the wheelhouse."""
    from modelyard.pipeline.runners.docker import DockerRunner

    root = tmp_path_factory.mktemp("image-project")
    shutil.copy(EXAMPLE / "pipeline.py", root / "pipeline.py")
    runner = DockerRunner(engine=engine, base_image=base_image)
    runner.prepare(root, root / "pipeline.py")
    assert runner.image is not None
    return runner.image


def _generate_batch(root: Path) -> None:
    sys.path.insert(0, str(EXAMPLE))
    try:
        from generate import generate  # type: ignore[import-not-found]
    finally:
        sys.path.remove(str(EXAMPLE))
    incoming = root / "data" / "incoming"
    incoming.mkdir(parents=True)
    generate(rows=2000, seed=1).to_csv(incoming / "batch-001.csv", index=False)


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.postgres
@pytest.mark.timeout(1500)  # kfp's venv, the step image, ten containers: a shared machine
def test_the_maintenance_pipeline_runs_end_to_end_with_kfp_local(
    kfp_python: Path, maintenance_step_image: str, pg_url: str, tmp_path: Path
) -> None:
    root = _workspace(
        tmp_path, SHARED.replace("registry.example/maintenance-steps:1", maintenance_step_image)
    )
    _generate_batch(root)
    artifacts = tmp_path / "team-artifacts"
    artifacts.mkdir()
    spec = tmp_path / "maintenance.yaml"
    done = _compile(kfp_python, root, "-o", str(spec))
    assert done.returncode == 0, done.stderr + done.stdout

    pipeline_root = tmp_path / "kfp-root"
    pipeline_root.mkdir()
    args = {"n_estimators": 30, "min_roc_auc": 0.6}
    run = subprocess.run(
        [
            str(kfp_python),
            "-c",
            RUN_LOCAL,
            str(spec),
            str(pipeline_root),
            str(root),
            str(artifacts),
            pg_url,
            json.dumps(args),
        ],
        cwd=tmp_path,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=1500,
    )
    log = run.stdout[-6000:] + run.stderr[-6000:]
    assert run.returncode == 0, log

    # the host reads what the pods recorded in the team's store and artifact folder
    ws = Workspace.at(
        root, {"MODELYARD_STORE_URL": pg_url, "MODELYARD_ARTIFACT_ROOT": str(artifacts)}
    )
    try:
        (record,) = ws.store.pipelines.list("maintenance", 10)
        assert record.runner == "kubeflow", log
        assert record.status == "finished", (record.error, log)
        assert record.params["n_estimators"] == 30
        statuses = {s.step: s.status for s in record.steps}
        assert statuses == dict.fromkeys(
            [
                "collect",
                "validate",
                "prepare",
                "train",
                "evaluate",
                "register",
                "featurize",
                "predict",
            ],
            "finished",
        )
        pipeline_run = ws.store.runs.get(record.id)
        assert pipeline_run.status == "finished"
        assert pipeline_run.tags["modelyard.runner"] == "kubeflow"
        assert pipeline_run.tags["modelyard.kubeflow.job"].startswith("maintenance")
        for s in record.steps:
            step_run = ws.store.runs.get(s.run_id)
            assert step_run.parent_id == record.id
            assert step_run.status == "finished"
            assert s.attempts == 1
        train = ws.store.runs.get(record.step("train").run_id)
        assert (train.params["n_estimators"], train.params["max_depth"]) == ("30", "8")
        evaluate = ws.store.runs.get(record.step("evaluate").run_id)
        assert evaluate.latest_metrics["roc_auc"] > 0.6
        # the register step logged the model (log_model, orjson and skops in the image)
        registered = record.step("register").outputs["registered"]
        assert ws.artifacts.exists(registered["digest"])
    finally:
        ws.close()


FAILING = """
from modelyard.pipeline import Pipeline, step

@step
def numbers(n_rows: int = 3) -> list:
    return list(range(n_rows))

@step
def fit(numbers: list) -> float:
    raise RuntimeError(f"diverged on {len(numbers)} rows")

@step
def report(fit: float) -> dict:
    return {"fit": fit}

pipeline = Pipeline("failing", [numbers, fit, report])
"""


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.postgres
@pytest.mark.timeout(1500)  # kfp's venv, the step image, ten containers: a shared machine
def test_a_failing_step_fails_the_kfp_run_and_the_exit_handler_settles_the_rest(
    kfp_python: Path, maintenance_step_image: str, pg_url: str, tmp_path: Path
) -> None:
    root = _workspace(
        tmp_path, SHARED.replace("registry.example/maintenance-steps:1", maintenance_step_image)
    )
    (root / "pipeline.py").write_text(textwrap.dedent(FAILING))
    artifacts = tmp_path / "team-artifacts"
    artifacts.mkdir()
    spec = tmp_path / "failing.yaml"
    done = _compile(kfp_python, root, "-o", str(spec))
    assert done.returncode == 0, done.stderr + done.stdout
    pipeline_root = tmp_path / "kfp-root"
    pipeline_root.mkdir()
    command = [str(kfp_python), "-c", RUN_LOCAL, str(spec), str(pipeline_root), str(root)]
    command += [str(artifacts), pg_url, json.dumps({"n_rows": 5})]
    run = subprocess.run(
        command, cwd=tmp_path, env=_env(), capture_output=True, text=True, timeout=900
    )
    log = run.stdout[-6000:] + run.stderr[-6000:]
    assert run.returncode == 0, log

    ws = Workspace.at(
        root, {"MODELYARD_STORE_URL": pg_url, "MODELYARD_ARTIFACT_ROOT": str(artifacts)}
    )
    try:
        (record,) = ws.store.pipelines.list("failing", 10)
        assert record.runner == "kubeflow"
        assert record.status == "failed", log
        assert record.error == "step 'fit' failed: RuntimeError: diverged on 5 rows"
        steps = {s.step: (s.status, s.error) for s in record.steps}
        assert steps == {
            "numbers": ("finished", None),
            "fit": ("failed", "RuntimeError: diverged on 5 rows"),
            "report": ("skipped", "an upstream step failed"),
        }
        assert ws.store.runs.get(record.id).status == "failed"
        assert ws.store.runs.get(record.step("fit").run_id).status == "failed"
    finally:
        ws.close()


RETRYING = """
from pathlib import Path
from modelyard.pipeline import Pipeline, step

@step
def numbers(n_rows: int = 3) -> list:
    return list(range(n_rows))

@step(retries=1)
def fit(numbers: list) -> float:
    if not Path("ok").exists():
        raise RuntimeError("not yet")
    return float(sum(numbers))

@step
def report(fit: float) -> dict:
    if Path("boom").exists():
        raise RuntimeError("boom")
    return {"fit": fit}

pipeline = Pipeline("retrying", [numbers, fit, report])
"""


def test_kfp_pods_count_attempts_against_retries(
    sqlite_workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """KFP reruns a failed task for its retry policy without telling the pod which attempt it
    is: the step's row counts them, so only the failure past ``retries`` is final. The pods'
    command lines are the ones the compiler writes (worker modes, called here in-process)."""
    from modelyard.pipeline.worker import main

    ws = sqlite_workspace
    path = ws.root / "retrying.py"
    path.write_text(textwrap.dedent(RETRYING))
    monkeypatch.setenv("MODELYARD_WORKSPACE", str(ws.root))

    def pod(mode: str, uuid: str, *args: str) -> int:
        common = ["--pipeline-file", str(path), "--pipeline", "retrying"]
        code = main([mode, *common, "--job-uuid", uuid, "--job-name", "retrying-job", *args])
        monkeypatch.chdir(ws.root)
        return code

    def step(uuid: str, name: str, *upstream: Path) -> tuple[int, Path]:
        out = tmp_path / uuid / name / "outputs"
        ups = [a for u in upstream for a in ("--upstream", u.read_text())]
        return pod("--kfp", uuid, "--step", name, "--outputs-file", str(out), *ups), out

    first = "0f3c9a1b-2d4e-4f60-8a7b-9c0d1e2f3a4b"
    run_id = first.replace("-", "")
    assert pod("--kfp-start", first, "--param", "n_rows=4") == 0
    code, numbers = step(first, "numbers")
    assert code == 0
    assert json.loads(numbers.read_text())["numbers"]["serializer"] == "json"
    code, _ = step(first, "fit", numbers)
    assert code == 1
    row = ws.store.pipelines.get(run_id).step("fit")
    assert (row.status, row.attempts, row.error) == ("running", 1, "RuntimeError: not yet")
    (ws.root / "ok").write_text("")
    code, fit = step(first, "fit", numbers)  # KFP's retry
    assert code == 0
    row = ws.store.pipelines.get(run_id).step("fit")
    assert (row.status, row.attempts) == ("finished", 2)
    assert step(first, "report", fit)[0] == 0
    assert pod("--kfp-finish", first, "--status", '{"state": "SUCCEEDED", "error": {}}') == 0
    record = ws.store.pipelines.get(run_id)
    assert (record.status, record.runner) == ("finished", "kubeflow")
    assert record.params == {"n_rows": 4}

    # a step without retries fails at once; the exit handler ends the run with it
    second = "1f3c9a1b-2d4e-4f60-8a7b-9c0d1e2f3a4b"
    (ws.root / "boom").write_text("")
    assert pod("--kfp-start", second) == 0
    _, numbers = step(second, "numbers")
    _, fit = step(second, "fit", numbers)
    assert step(second, "report", fit)[0] == 1
    row = ws.store.pipelines.get(second.replace("-", "")).step("report")
    assert (row.status, row.error) == ("failed", "RuntimeError: boom")
    failed = '{"state": "FAILED", "error": {"code": 9, "message": "Task report failed."}}'
    assert pod("--kfp-finish", second, "--status", failed) == 0
    record = ws.store.pipelines.get(second.replace("-", ""))
    assert (record.status, record.error) == ("failed", "step 'report' failed: RuntimeError: boom")
