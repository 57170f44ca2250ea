"""A pipeline compiled for Argo, run as Argo would run it, leaves the records a local run leaves.

No cluster runs here: :class:`ArgoSimulator` plays the controller. It reads the compiled
Workflow, runs the start task, then each DAG task once its dependencies succeeded (each pod's
command in this process, or in a subprocess when the pod must be able to die), rerunning a
failed one for its ``retryStrategy``, stopping at the first failure (Argo's ``failFast``), and
finally the ``onExit`` handler. Template placeholders are filled from the manifest, the
previous tasks' output parameters and the workflow's state, as Argo fills them; an unresolved
placeholder fails the test."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from modelyard.cli.main import cli
from modelyard.errors import ConfigError, PipelineDefinitionError, RunError
from modelyard.pipeline.argo import compile_argo
from modelyard.pipeline.argo_run import _failed_nodes, _messages_by_template, pipeline_run_id
from modelyard.store.pipeline_entities import PipelineRun
from modelyard.workspace import Workspace

SOURCE = """
import os
import signal

from modelyard.pipeline import Pipeline, current_run, step

FAIL = False
KILL = False

@step
def numbers(n_rows: int = 3) -> list:
    if KILL:
        os.kill(os.getpid(), signal.SIGKILL)
    return list(range(n_rows))

@step(retries=1, retry_delay=0.5, timeout=30)
def fit_model(numbers: list, rate: float = 0.5) -> float:
    if FAIL:
        raise RuntimeError("diverged")
    current_run().log_metric("total", sum(numbers))
    return sum(numbers) * rate

@step
def report(fit_model: float) -> dict:
    return {"score": fit_model}

pipeline = Pipeline("argodemo", [numbers, fit_model, report])
"""
SECRET = "modelyard-store"
_WORKSPACE_VARS = ("MODELYARD_STORE_URL", "MODELYARD_ARTIFACT_ROOT", "MODELYARD_WORKSPACE")
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]+?)\s*\}\}")


def substitute(text: str, scope: Mapping[str, str]) -> str:
    """Argo's ``{{…}}`` substitution; a name not in scope is a bug in the compiled manifest."""

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        assert name in scope, f"Argo could not resolve {{{{{name}}}}} in {text!r}"
        return scope[name]

    return _PLACEHOLDER.sub(value, text)


class ArgoSimulator:
    def __init__(
        self,
        manifest: Mapping[str, Any],
        *,
        secrets: Mapping[tuple[str, str], str],
        pods: Path,
        monkeypatch: pytest.MonkeyPatch,
        params: Mapping[str, str] | None = None,
        in_subprocess: frozenset[str] = frozenset(),
        after_pod: Callable[[str, int], None] | None = None,
    ) -> None:
        self.spec = manifest["spec"]
        self.templates = {t["name"]: t for t in self.spec["templates"]}
        self.secrets = secrets
        self.pods = pods
        self.monkeypatch = monkeypatch
        self.in_subprocess = in_subprocess
        self.after_pod = after_pod or (lambda _template, _code: None)
        self.uid = str(uuid.uuid4())
        self.name = self.spec.get("generateName", "wf-") + "x7k2p"
        self.globals = {"workflow.uid": self.uid, "workflow.name": self.name}
        for p in self.spec["arguments"]["parameters"]:
            value = (params or {}).get(p["name"], p["value"])
            self.globals[f"workflow.parameters.{p['name']}"] = value
        self.outputs: dict[str, dict[str, str]] = {}
        self.failures: list[dict[str, str]] = []
        self.logs: list[str] = []
        self._pod_count = 0

    @property
    def run_id(self) -> str:
        return self.uid.replace("-", "")

    def run(self, *, stop_after: str | None = None) -> str:
        """The workflow's status; ``stop_after`` plays ``argo stop`` once that task is done."""
        tasks = self.templates[self.spec["entrypoint"]]["dag"]["tasks"]
        done: set[str] = set()
        status = "Succeeded"
        pending = list(tasks)
        while pending and status == "Succeeded":
            task = next(t for t in pending if set(t.get("dependencies", ())) <= done)
            pending.remove(task)
            if not self.task(task):
                status = "Failed"
            done.add(task["name"])
            if task["name"] == stop_after:
                status = "Failed"
        assert self.spec["onExit"] in self.templates
        failures = json.dumps(self.failures or None)
        exit_scope = {
            **self.globals,
            "workflow.status": status,
            # Argo (3.5+) quotes the JSON once more so the quotes survive substitution.
            "workflow.failures": json.dumps(failures),
        }
        code, _ = self.pod(self.templates[self.spec["onExit"]], exit_scope)
        assert code == 0, self.logs[-1]
        return status

    def task(self, task: Mapping[str, Any]) -> bool:
        scope = dict(self.globals)
        for name, outputs in self.outputs.items():
            for key, value in outputs.items():
                scope[f"tasks.{name}.outputs.parameters.{key}"] = value
        inputs = {
            f"inputs.parameters.{p['name']}": substitute(p["value"], scope)
            for p in task.get("arguments", {}).get("parameters", [])
        }
        template = self.templates[task["template"]]
        retry = template.get("retryStrategy")
        for attempt in range(int(retry["limit"]) + 1 if retry else 1):
            local = {**self.globals, **inputs}
            if retry:
                local["retries"] = str(attempt)
            code, outputs = self.pod(template, local)
            if code == 0:
                self.outputs[task["name"]] = outputs
                return True
            exit_code = 128 - code if code < 0 else code
            self.failures.append(
                {
                    "displayName": f"{task['name']}({attempt})" if retry else task["name"],
                    "message": f"Error (exit code {exit_code})",
                    "templateName": template["name"],
                    "phase": "Failed",
                    "podName": f"{self.name}-{template['name']}-{attempt}",
                }
            )
        if retry:
            self.failures.insert(
                0,
                {
                    "displayName": task["name"],
                    "message": "No more retries left",
                    "templateName": template["name"],
                    "phase": "Failed",
                    "podName": f"{self.name}-{template['name']}",
                },
            )
        return False

    def pod(
        self, template: Mapping[str, Any], scope: Mapping[str, str]
    ) -> tuple[int, dict[str, str]]:
        """Run one pod of ``template``: its container's command with its environment and
        working folder; output parameter files land in the pod's own folder."""
        self._pod_count += 1
        folder = self.pods / f"pod-{self._pod_count}"
        folder.mkdir(parents=True)
        container = template["container"]
        assert container["command"] == ["python", "-m", "modelyard.pipeline.worker"]
        env: dict[str, str] = {}
        for var in container["env"]:
            if "value" in var:
                env[var["name"]] = var["value"]
            else:
                ref = var["valueFrom"]["secretKeyRef"]
                env[var["name"]] = self.secrets[(ref["name"], ref["key"])]
        files = {
            p["valueFrom"]["path"]: folder / Path(p["valueFrom"]["path"]).name
            for p in template.get("outputs", {}).get("parameters", [])
        }
        args = [substitute(a, scope) for a in container["args"]]
        args = [str(files[a]) if a in files else a for a in args]
        if template["name"] in self.in_subprocess:
            code = self._subprocess(args, env, container["workingDir"])
        else:
            code = self._in_process(args, env, container["workingDir"])
        self.after_pod(template["name"], code)
        outputs = {}
        if code == 0:
            for p in template.get("outputs", {}).get("parameters", []):
                outputs[p["name"]] = files[p["valueFrom"]["path"]].read_text()
        return code, outputs

    def _in_process(self, args: list[str], env: Mapping[str, str], cwd: str) -> int:
        import contextlib
        import io
        import traceback

        from modelyard.pipeline import worker

        log = io.StringIO()
        with self.monkeypatch.context() as m:
            for var in _WORKSPACE_VARS:
                m.delenv(var, raising=False)
            for key, value in env.items():
                m.setenv(key, value)
            m.chdir(cwd)
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                try:
                    code = worker.main(args)
                except Exception:
                    traceback.print_exc()
                    code = 1  # an uncaught exception ends python with status 1
        self.logs.append(log.getvalue())
        return code

    def _subprocess(self, args: list[str], env: Mapping[str, str], cwd: str) -> int:
        base = {k: v for k, v in os.environ.items() if k not in _WORKSPACE_VARS}
        proc = subprocess.run(
            [sys.executable, "-m", "modelyard.pipeline.worker", *args],
            env={**base, **env},
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )
        self.logs.append(proc.stdout + proc.stderr)
        return proc.returncode


@pytest.fixture
def pipeline_file(workspace: Workspace) -> Path:
    path = workspace.root / "pipelines" / "demo.py"
    path.parent.mkdir()
    path.write_text(textwrap.dedent(SOURCE))
    return path


def _simulator(
    workspace: Workspace,
    pipeline_file: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    **kwargs: Any,
) -> ArgoSimulator:
    """Compile with the workspace as the image's project folder and the store URL in a
    Secret, as a team would configure ``[pipeline.argo]``."""
    config = workspace.root / "modelyard.toml"
    config.write_text(
        config.read_text()
        + f'\n[pipeline.argo]\nworkdir = "{workspace.root}"\nstore_secret = "{SECRET}"\n'
    )
    compiling = Workspace.at(workspace.root, {"MODELYARD_STORE_URL": workspace.settings.store_url})
    # The simulated pods share the host's artifact folder, as one node would.
    manifest = compile_argo(pipeline_file, workspace=compiling, allow_local_state=True)
    compiling.close()
    return ArgoSimulator(
        manifest,
        secrets={(SECRET, "url"): workspace.settings.store_url},
        pods=tmp_path / "pods",
        monkeypatch=monkeypatch,
        **kwargs,
    )


def _show(run_id: str) -> str:
    result = CliRunner().invoke(cli, ["pipeline", "show", run_id[:12]], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    return result.output


def _step_runs(workspace: Workspace, record: PipelineRun) -> dict[str, Any]:
    return {s.step: workspace.store.runs.get(s.run_id) for s in record.steps if s.run_id}


def test_an_argo_workflow_is_a_pipeline_run_with_its_steps_as_children(
    workspace: Workspace, pipeline_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    states: list[tuple[str, str, list[str], Any]] = []

    def after_pod(template: str, code: int) -> None:
        assert code == 0, argo.logs[-1]
        record = workspace.store.pipelines.get(argo.run_id)
        parent = workspace.store.runs.get(argo.run_id)
        states.append(
            (template, record.status, [s.status for s in record.steps], parent.heartbeat_at)
        )

    argo = _simulator(
        workspace,
        pipeline_file,
        tmp_path,
        monkeypatch,
        params={"rate": "0.25"},
        after_pod=after_pod,
    )
    assert argo.run() == "Succeeded", argo.logs
    assert [s[:3] for s in states] == [
        ("modelyard-start", "running", ["pending", "pending", "pending"]),
        ("step-numbers", "running", ["finished", "pending", "pending"]),
        ("step-fit-model", "running", ["finished", "finished", "pending"]),
        ("step-report", "running", ["finished", "finished", "finished"]),
        ("modelyard-finish", "finished", ["finished", "finished", "finished"]),
    ]
    # No process lives as long as the workflow: each step keeps the pipeline's run alive.
    beats = [s[3] for s in states[:4]]
    assert beats == sorted(beats)
    assert len(set(beats)) == 4

    record = workspace.store.pipelines.get(argo.run_id)
    assert (record.pipeline, record.status, record.runner, record.error) == (
        "argodemo",
        "finished",
        "argo",
        None,
    )
    assert record.pipeline_file == str(pipeline_file)
    assert record.params == {"n_rows": 3, "rate": 0.25}
    assert [(s.step, s.status, s.attempts) for s in record.steps] == [
        ("numbers", "finished", 1),
        ("fit_model", "finished", 1),
        ("report", "finished", 1),
    ]
    assert all(s.started_at and s.ended_at and s.outputs for s in record.steps)
    report = record.step("report").outputs
    assert report is not None
    assert json.loads(workspace.artifacts.get_bytes(report["report"]["digest"])) == {"score": 0.75}

    # The pipeline's tracked run, ended by the exit handler, holds the step runs.
    parent = workspace.store.runs.get(argo.run_id)
    assert (parent.name, parent.pipeline, parent.status) == ("argodemo", "argodemo", "finished")
    assert parent.tags["modelyard.runner"] == "argo"
    assert parent.tags["modelyard.kind"] == "pipeline"
    assert parent.tags["modelyard.argo.workflow"] == argo.name
    assert parent.params == {"n_rows": "3", "rate": "0.25"}
    children = workspace.store.runs.search(parent_id=argo.run_id)
    step_runs = _step_runs(workspace, record)
    assert {c.id for c in children} == {r.id for r in step_runs.values()}
    assert {r.name: (r.status, r.parent_id) for r in step_runs.values()} == {
        "numbers": ("finished", argo.run_id),
        "fit_model": ("finished", argo.run_id),
        "report": ("finished", argo.run_id),
    }
    assert step_runs["fit_model"].params == {"rate": "0.25"}
    assert step_runs["fit_model"].latest_metrics == {"total": 3.0}
    contains = {
        e.target_id
        for e in workspace.store.lineage.edges_from("run", argo.run_id)
        if e.relation == "contains"
    }
    assert contains == {r.id for r in step_runs.values()}
    # Steps are linked through what they wrote and read, as in a local run.
    numbers_out = record.step("numbers").outputs
    assert numbers_out is not None
    readers = workspace.store.lineage.edges_from("artifact", numbers_out["numbers"]["digest"])
    assert [(e.target_id, e.relation) for e in readers] == [(step_runs["fit_model"].id, "input")]

    shown = _show(argo.run_id)
    assert f"pipeline run {argo.run_id}  argodemo  finished" in shown
    assert f"file: {pipeline_file}   runner: argo" in shown
    assert "params: n_rows=3 rate=0.25" in shown
    for name, run in step_runs.items():
        assert re.search(rf"{name}\s+finished\s+no\s+1\s+\S+\s+{run.id[:12]}", shown), shown
    listing = CliRunner().invoke(cli, ["pipeline", "runs"])
    assert re.search(rf"{argo.run_id[:12]}\s+argodemo\s+finished", listing.output)

    # A start pod rerun by Argo (it lost its node, say) finds the run it started.
    start = argo.templates["modelyard-start"]
    assert argo.pod(start, argo.globals) == (0, {})
    assert workspace.store.pipelines.get(argo.run_id) == record


def test_a_failing_step_fails_the_pipeline_run_after_argos_retries(
    workspace: Workspace, pipeline_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline_file.write_text(textwrap.dedent(SOURCE).replace("FAIL = False", "FAIL = True"))
    seen: list[tuple[int, str, int, str | None]] = []
    run_ids: list[str | None] = []

    def after_pod(template: str, code: int) -> None:
        if template == "step-fit-model":
            s = workspace.store.pipelines.get(argo.run_id).step("fit_model")
            seen.append((code, s.status, s.attempts, s.error))
            run_ids.append(s.run_id)

    argo = _simulator(workspace, pipeline_file, tmp_path, monkeypatch, after_pod=after_pod)
    assert argo.run() == "Failed"
    # Between Argo's retries the step is still running, as in the local runner.
    assert seen == [
        (1, "running", 1, "RuntimeError: diverged"),
        (1, "failed", 2, "RuntimeError: diverged"),
    ]

    record = workspace.store.pipelines.get(argo.run_id)
    error = "step 'fit_model' failed: RuntimeError: diverged"
    assert (record.status, record.error) == ("failed", error)
    assert [(s.step, s.status, s.attempts, s.error) for s in record.steps] == [
        ("numbers", "finished", 1, None),
        ("fit_model", "failed", 2, "RuntimeError: diverged"),
        ("report", "skipped", 0, "an upstream step failed"),
    ]
    assert record.step("report").run_id is None
    parent = workspace.store.runs.get(argo.run_id)
    assert (parent.status, parent.error) == ("failed", error)
    # Each attempt is a child run of its own; the step's row points at the last one.
    attempts = {
        r.id: (r.status, r.error)
        for r in workspace.store.runs.search(parent_id=argo.run_id)
        if r.name == "fit_model"
    }
    assert attempts == {i: ("failed", "RuntimeError: diverged") for i in run_ids if i}
    assert len(attempts) == 2
    assert record.step("fit_model").run_id == run_ids[-1]

    shown = _show(argo.run_id)
    assert f"pipeline run {argo.run_id}  argodemo  failed" in shown
    assert re.search(r"fit_model\s+failed\s+no\s+2\s+.*RuntimeError: diverged", shown), shown
    assert re.search(r"report\s+skipped\s+no\s+0\s+-\s+an upstream step failed", shown), shown


def test_a_step_killed_in_its_pod_fails_with_argos_message(
    workspace: Workspace, pipeline_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pod that dies (OOM, deadline, eviction) cannot report: the exit handler settles its
    step with what Argo saw, and ends its tracked run instead of leaving it to read as lost."""
    pipeline_file.write_text(textwrap.dedent(SOURCE).replace("KILL = False", "KILL = True"))
    argo = _simulator(
        workspace,
        pipeline_file,
        tmp_path,
        monkeypatch,
        in_subprocess=frozenset({"step-numbers"}),
    )
    assert argo.run() == "Failed"
    record = workspace.store.pipelines.get(argo.run_id)
    assert record.error == "step 'numbers' failed: Error (exit code 137)"
    assert [(s.step, s.status, s.error) for s in record.steps] == [
        ("numbers", "failed", "Error (exit code 137)"),
        ("fit_model", "skipped", "an upstream step failed"),
        ("report", "skipped", "an upstream step failed"),
    ]
    numbers = record.step("numbers")
    assert numbers.attempts == 1
    assert numbers.ended_at is not None
    killed = workspace.store.runs.get(numbers.run_id or "")
    assert (killed.status, killed.error, killed.parent_id) == (
        "failed",
        "Error (exit code 137)",
        argo.run_id,
    )
    assert workspace.store.runs.get(argo.run_id).status == "failed"


def test_a_stopped_workflow_records_the_steps_it_never_ran(
    workspace: Workspace, pipeline_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    argo = _simulator(workspace, pipeline_file, tmp_path, monkeypatch)
    assert argo.run(stop_after="numbers") == "Failed"
    record = workspace.store.pipelines.get(argo.run_id)
    assert (record.status, record.error) == ("failed", "the Argo workflow ended Failed")
    assert [(s.step, s.status, s.error) for s in record.steps] == [
        ("numbers", "finished", None),
        ("fit_model", "skipped", "not run: the Argo workflow ended Failed"),
        ("report", "skipped", "not run: the Argo workflow ended Failed"),
    ]
    assert workspace.store.runs.get(argo.run_id).status == "failed"


def test_a_step_may_not_take_the_start_tasks_name(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    path = sqlite_workspace.root / "clash.py"
    path.write_text(
        textwrap.dedent(
            """
            from modelyard.pipeline import Pipeline, step

            @step
            def modelyard_start() -> int:
                return 1

            pipeline = Pipeline("clash", [modelyard_start])
            """
        )
    )
    with pytest.raises(
        PipelineDefinitionError, match="both become the Argo task 'modelyard-start'"
    ):
        compile_argo(path, workspace=sqlite_workspace)


def test_the_pipeline_run_id_is_the_workflow_uid() -> None:
    uid = "3F2504E0-4F89-11D3-9A0C-0305E82C3301"
    assert pipeline_run_id(uid) == "3f2504e04f8911d39a0c0305e82c3301"
    with pytest.raises(ConfigError, match="is not a workflow uid"):
        pipeline_run_id("{{workflow.uid}}")


def test_start_run_takes_a_chosen_id_only_in_run_id_form(sqlite_workspace: Workspace) -> None:
    from modelyard.errors import InvalidParameter
    from modelyard.tracking import start_run

    with pytest.raises(InvalidParameter, match="32 lowercase hex digits"):
        start_run("x", workspace=sqlite_workspace, run_id="3F2504E0-4F89-11D3-9A0C-0305E82C3301")
    chosen = "3f2504e04f8911d39a0c0305e82c3301"
    active = start_run("x", workspace=sqlite_workspace, run_id=chosen)
    active.detach()  # left open for another process to end
    assert sqlite_workspace.store.runs.get(chosen).status == "running"
    with pytest.raises(RunError, match="has ended"):
        active.log_metric("loss", 1.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("null", []),
        ('[{"templateName": "step-a", "message": "OOMKilled (exit code 137)"}]', 1),
        (json.dumps('[{"templateName": "step-a", "message": "OOMKilled (exit code 137)"}]'), 1),
        (json.dumps("null"), []),
        ("{{workflow.failures}}", []),
        ('{"not": "a list"}', []),
    ],
)
def test_workflow_failures_are_read_raw_or_quoted(text: str, expected: object) -> None:
    nodes = _failed_nodes(text)
    if expected == []:
        assert nodes == []
    else:
        assert _messages_by_template(nodes) == {"step-a": "OOMKilled (exit code 137)"}


def test_the_message_of_a_retried_steps_last_pod_wins() -> None:
    nodes = [
        {
            "displayName": "fit(1)",
            "templateName": "step-fit",
            "message": "OOMKilled",
            "podName": "p1",
        },
        {
            "displayName": "fit",
            "templateName": "step-fit",
            "message": "No more retries left",
            "podName": "p",
        },
        {
            "displayName": "fit(0)",
            "templateName": "step-fit",
            "message": "Error (exit code 1)",
            "podName": "p0",
        },
    ]
    assert _messages_by_template(nodes) == {"step-fit": "OOMKilled"}
