"""``modelyard pipeline``: run/resume/runs/show exit codes and output, and the Argo compiler's
manifest checked against the Argo ``Workflow`` schema."""

from __future__ import annotations

import textwrap
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from modelyard.cli.main import cli
from modelyard.workspace import Workspace

SOURCE = """
from modelyard.pipeline import Pipeline, step

FAIL = False

@step
def numbers(n_rows: int = 3) -> list:
    return list(range(n_rows))

@step(retries=1, retry_delay=0.5, timeout=30)
def fit_model(numbers: list, rate: float = 0.5) -> float:
    if FAIL:
        raise RuntimeError("diverged")
    return sum(numbers) * rate

pipeline = Pipeline("clidemo", [numbers, fit_model])
"""


@pytest.fixture
def pipeline_file(sqlite_workspace: Workspace) -> Path:
    path = sqlite_workspace.root / "pipe.py"
    path.write_text(textwrap.dedent(SOURCE))
    return path


def test_run_shows_steps_and_cache(pipeline_file: Path) -> None:
    runner = CliRunner()
    first = runner.invoke(cli, ["pipeline", "run", str(pipeline_file), "-p", "n_rows=5"])
    assert first.exit_code == 0, first.output
    assert "✓ numbers" in first.output
    assert "(2 ran, 0 cached, 2 steps)" in first.output
    again = runner.invoke(cli, ["pipeline", "run", str(pipeline_file), "-p", "n_rows=5"])
    assert again.exit_code == 0
    assert "↺ numbers              cached" in again.output
    assert "(0 ran, 2 cached, 2 steps)" in again.output
    listing = runner.invoke(cli, ["pipeline", "runs"])
    assert listing.exit_code == 0
    assert listing.output.count("clidemo") == 2
    run_id = again.output.strip().splitlines()[-1].split()[2]
    shown = runner.invoke(cli, ["pipeline", "show", run_id[:8]])
    assert shown.exit_code == 0
    assert "params: n_rows=5 rate=0.5" in shown.output
    assert "fit_model" in shown.output
    assert "cached" in shown.output


@pytest.mark.parametrize(
    ("arg", "message"),
    [
        ("n_rows=many", "error: parameter 'n_rows' expects int, got 'many'"),
        ("rows=3", "error: unknown parameter 'rows' for pipeline 'clidemo'"),
    ],
)
def test_a_bad_parameter_is_a_usage_error(pipeline_file: Path, arg: str, message: str) -> None:
    result = CliRunner().invoke(cli, ["pipeline", "run", str(pipeline_file), "-p", arg])
    assert result.exit_code == 2
    assert message in result.output


def test_a_failed_run_exits_1_and_resume_finishes_it(pipeline_file: Path) -> None:
    pipeline_file.write_text(textwrap.dedent(SOURCE).replace("FAIL = False", "FAIL = True"))
    runner = CliRunner()
    failed = runner.invoke(cli, ["pipeline", "run", str(pipeline_file)])
    assert failed.exit_code == 1
    assert "retrying (attempt 1)" in failed.output
    assert "RuntimeError: diverged" in failed.output
    assert "modelyard pipeline resume" in failed.output
    run_id = failed.output.split("modelyard pipeline resume ")[1].split("'")[0]
    pipeline_file.write_text(textwrap.dedent(SOURCE))
    resumed = runner.invoke(cli, ["pipeline", "resume", run_id])
    assert resumed.exit_code == 0, resumed.output
    assert "↺ numbers              reused" in resumed.output
    assert "✓ fit_model" in resumed.output


# The parts of the Argo Workflow schema (argoproj.io/v1alpha1) a compiled pipeline uses.
_PARAMS = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["name"],
        "properties": {
            "name": {"type": "string"},
            "value": {"type": "string"},
            "valueFrom": {
                "type": "object",
                "properties": {"path": {"type": "string"}},
                "additionalProperties": False,
            },
        },
        "additionalProperties": False,
    },
}
_DNS = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63}
WORKFLOW_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "argoproj.io/v1alpha1"},
        "kind": {"const": "Workflow"},
        "metadata": {
            "type": "object",
            "properties": {
                "generateName": {"type": "string"},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
        "spec": {
            "type": "object",
            "required": ["entrypoint", "templates"],
            "properties": {
                "entrypoint": {"type": "string"},
                "onExit": {"type": "string"},
                "serviceAccountName": {"type": "string"},
                "arguments": {"type": "object", "properties": {"parameters": _PARAMS}},
                "volumes": {"type": "array"},
                "templates": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "properties": {
                            "name": _DNS,
                            "inputs": {"type": "object", "properties": {"parameters": _PARAMS}},
                            "outputs": {"type": "object", "properties": {"parameters": _PARAMS}},
                            "activeDeadlineSeconds": {"type": "integer"},
                            "retryStrategy": {
                                "type": "object",
                                "properties": {
                                    "limit": {"type": ["string", "integer"]},
                                    "retryPolicy": {"enum": ["Always", "OnFailure", "OnError"]},
                                    "backoff": {"type": "object"},
                                },
                            },
                            "dag": {
                                "type": "object",
                                "required": ["tasks"],
                                "properties": {
                                    "tasks": {
                                        "type": "array",
                                        "items": {
                                            "type": "object",
                                            "required": ["name", "template"],
                                            "properties": {
                                                "name": _DNS,
                                                "template": {"type": "string"},
                                                "dependencies": {
                                                    "type": "array",
                                                    "items": {"type": "string"},
                                                },
                                                "arguments": {"type": "object"},
                                            },
                                            "additionalProperties": False,
                                        },
                                    }
                                },
                            },
                            "container": {
                                "type": "object",
                                "required": ["image"],
                                "properties": {
                                    "image": {"type": "string"},
                                    "command": {"type": "array", "items": {"type": "string"}},
                                    "args": {"type": "array", "items": {"type": "string"}},
                                    "workingDir": {"type": "string"},
                                    "env": {"type": "array"},
                                    "volumeMounts": {"type": "array"},
                                },
                                "additionalProperties": False,
                            },
                        },
                        "additionalProperties": False,
                        "oneOf": [{"required": ["dag"]}, {"required": ["container"]}],
                    },
                },
            },
        },
    },
}


def test_compile_to_argo_gives_a_valid_workflow(pipeline_file: Path, tmp_path: Path) -> None:
    out = tmp_path / "wf.yaml"
    result = CliRunner().invoke(
        cli,
        [
            "pipeline",
            "compile",
            str(pipeline_file),
            "--target",
            "argo",
            "-o",
            str(out),
            "--image",
            "registry.local/clidemo:1",
            "-p",
            "rate=0.25",
            "--allow-local-state",
        ],
    )
    assert result.exit_code == 0, result.output
    manifest = yaml.safe_load(out.read_text())
    jsonschema.validate(manifest, WORKFLOW_SCHEMA)
    spec = manifest["spec"]
    assert spec["arguments"]["parameters"] == [
        {"name": "n_rows", "value": "3"},
        {"name": "rate", "value": "0.25"},
    ]
    dag = next(t for t in spec["templates"] if t["name"] == "pipeline")["dag"]["tasks"]
    # The start task opens the pipeline run; the exit handler closes it.
    assert dag[0] == {"name": "modelyard-start", "template": "modelyard-start"}
    assert dag[1] == {
        "name": "numbers",
        "template": "step-numbers",
        "dependencies": ["modelyard-start"],
    }
    assert dag[2] == {
        "name": "fit-model",
        "template": "step-fit-model",
        "dependencies": ["numbers"],
        "arguments": {
            "parameters": [
                {
                    "name": "upstream-numbers",
                    "value": "{{tasks.numbers.outputs.parameters.outputs}}",
                }
            ]
        },
    }
    templates = {t["name"]: t for t in spec["templates"]}
    start = templates["modelyard-start"]["container"]["args"]
    assert start[0] == "--argo-start"
    assert "{{workflow.uid}}" in start
    assert "n_rows={{workflow.parameters.n_rows}}" in start
    assert spec["onExit"] == "modelyard-finish"
    finish = templates["modelyard-finish"]["container"]["args"]
    assert finish[0] == "--argo-finish"
    assert {"{{workflow.uid}}", "{{workflow.status}}", "{{workflow.failures}}"} <= set(finish)
    fit = templates["step-fit-model"]
    assert fit["container"]["command"] == ["python", "-m", "modelyard.pipeline.worker"]
    assert "rate={{workflow.parameters.rate}}" in fit["container"]["args"]
    assert "{{workflow.uid}}" in fit["container"]["args"]
    assert "{{retries}}" in fit["container"]["args"]  # only a template with a retryStrategy
    assert "{{retries}}" not in templates["step-numbers"]["container"]["args"]
    assert fit["retryStrategy"]["limit"] == "1"
    assert fit["activeDeadlineSeconds"] == 30


def _strict(node: object) -> object:
    """Close every object schema (no unknown fields), so a misspelt key fails validation."""
    if isinstance(node, dict):
        closed = {k: _strict(v) for k, v in node.items()}
        if closed.get("type") == "object" and "properties" in closed:
            closed.setdefault("additionalProperties", False)
        return closed
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def test_compiled_workflow_validates_against_argos_own_schema(
    pipeline_file: Path, tmp_path: Path
) -> None:
    """Hera's models are generated from Argo's OpenAPI spec: its JSON schema is Argo's."""
    models = pytest.importorskip("hera.workflows.models")
    schema = _strict(models.Workflow.model_json_schema(by_alias=True))
    out = tmp_path / "wf.yaml"
    result = CliRunner().invoke(
        cli,
        ["pipeline", "compile", str(pipeline_file), "--target", "argo", "-o", str(out),
         "--allow-local-state"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = yaml.safe_load(out.read_text())
    jsonschema.validate(manifest, schema)
    manifest["spec"]["templates"][0]["contianer"] = {}
    with pytest.raises(jsonschema.ValidationError, match="contianer"):
        jsonschema.validate(manifest, schema)


def test_compiling_without_shared_state_is_refused_with_the_settings_to_add(
    pipeline_file: Path, sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    """Found on main: each pod of a compiled workflow would get its own empty SQLite store and
    artifact folder. Now compiling names the settings that make the pods share them."""
    out = tmp_path / "wf.yaml"
    args = ["pipeline", "compile", str(pipeline_file), "--target", "argo", "-o", str(out)]
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code == 1
    assert "would get its own empty store" in refused.output
    assert 'store_secret = "modelyard-store"' in refused.output
    assert "artifacts_url" in refused.output
    assert not out.exists()

    config = sqlite_workspace.root / "modelyard.toml"
    config.write_text(
        config.read_text()
        + '\n[pipeline.argo]\nstore_secret = "team-store"\nartifacts_url = "s3://ml/artifacts"\n'
    )
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    templates = yaml.safe_load(out.read_text())["spec"]["templates"]
    for template in templates:
        if "container" not in template:
            continue
        env = {e["name"]: e for e in template["container"]["env"]}
        assert env["MODELYARD_STORE_URL"]["valueFrom"]["secretKeyRef"]["name"] == "team-store"
        assert env["MODELYARD_ARTIFACTS_URL"]["value"] == "s3://ml/artifacts"
