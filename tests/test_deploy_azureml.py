"""The ``azureml`` target, with no network and no credentials: every endpoint and deployment
document it writes is loaded with azure-ai-ml's own loaders, exactly as ``az ml
online-endpoint/online-deployment create -f`` loads them (its schema refuses unknown and
ill-typed fields), checked with the SDK's name and settings checks and turned into the REST body
the SDK would send. azure-ai-ml pulls in OpenTelemetry instrumentations, the Azure storage
clients and MSAL, so it lives in a venv of its own (tests/_client_venvs.py) and reads the
documents from files. Rollouts run through a recording :class:`AzureMLApi` whose documents the
same loaders check."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from click.testing import CliRunner

from _client_venvs import client_python
from _deploy_helpers import DIGESTS
from modelyard import deploy
from modelyard.cli.main import cli
from modelyard.deploy.azureml import (
    DEPLOYMENT_SCHEMA,
    ENDPOINT_SCHEMA,
    AzureMLApi,
    AzureMLOptions,
)
from modelyard.errors import InvalidParameter, RolloutFailed
from modelyard.workspace import Workspace

CHECKER = Path(__file__).with_name("_azureml_check.py")
IMAGE = f"127.0.0.1:5000/models/churn@{DIGESTS[1]}"
ROUTES = {
    "liveness_route": {"port": 8080, "path": "/v2/health/live"},
    "readiness_route": {"port": 8080, "path": "/v2/health/ready"},
    "scoring_route": {"port": 8080, "path": "/invocations"},
}


@pytest.fixture(scope="session")
def azure_ml_python() -> Path:
    return client_python("azure-ai-ml")


def load_with_azure_ml(python: Path, files: list[Path]) -> list[dict[str, Any]]:
    """azure-ai-ml's reading of each file (see tests/_azureml_check.py)."""
    done = subprocess.run(
        [str(python), str(CHECKER), *map(str, files)],
        capture_output=True,
        text=True,
        timeout=600,
        env={"PATH": "/usr/bin:/bin", "HOME": str(files[0].parent)},
        check=True,
    )
    return [json.loads(line) for line in done.stdout.splitlines()]


def _loaded(python: Path, docs: list[dict[str, Any]], folder: Path) -> list[dict[str, Any]]:
    """``docs`` written as YAML files and read back by azure-ai-ml; each must load."""
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i, doc in enumerate(docs):
        files.append(folder / f"{i:02d}.yml")
        files[-1].write_text(yaml.safe_dump(doc, sort_keys=False))
    answers = load_with_azure_ml(python, files)
    for answer in answers:
        assert "error" not in answer, answer
    return answers


@pytest.fixture
def pushed(sqlite_workspace: Workspace) -> Workspace:
    pytest.importorskip("sklearn")
    from _deploy_helpers import register_pushed_churn

    return register_pushed_churn(sqlite_workspace)


def test_dry_run_writes_yaml_azure_ml_loads(
    pushed: Workspace, azure_ml_python: Path, tmp_path: Path
) -> None:
    out = tmp_path / "azure"
    result = CliRunner().invoke(
        cli,
        ["-C", str(pushed.root), "deploy", "churn@1", "--target", "azureml", "--name",
         "churn-api", "--replicas", "2", "--instance-type", "Standard_F4s_v2", "--dry-run",
         "-o", "yaml", "--dry-run-dir", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    files = sorted(out.iterdir())
    assert [f.name for f in files] == [
        "01-managedOnlineEndpoint.yml",
        "02-managedOnlineDeployment.yml",
        "03-managedOnlineEndpoint.yml",
    ]
    # What is printed is the same documents, one YAML stream.
    assert list(yaml.safe_load_all(result.output)) == [yaml.safe_load(f.read_text()) for f in files]
    endpoint, deployment, traffic = load_with_azure_ml(azure_ml_python, files)
    assert endpoint["kind"] == "ManagedOnlineEndpoint", endpoint
    assert endpoint["entity"]["name"] == "churn-api"
    assert endpoint["entity"]["auth_mode"] == "key"
    assert deployment["kind"] == "ManagedOnlineDeployment", deployment
    entity = deployment["entity"]
    assert (entity["name"], entity["endpoint_name"]) == ("blue", "churn-api")
    assert (entity["instance_type"], entity["instance_count"]) == ("Standard_F4s_v2", 2)
    assert entity["environment"]["image"] == IMAGE
    assert entity["environment"]["inference_config"] == ROUTES
    assert entity["tags"]["modelyard-model"] == "churn@1"
    assert "model" not in entity  # the model is in the image
    assert traffic["entity"]["traffic"] == {"blue": 100}
    assert traffic["rest"]["properties"]["traffic"] == {"blue": 100}
    assert pushed.store.deployments.find("churn-api") is None  # a dry run records nothing


def test_a_dry_run_dir_that_cannot_be_made_is_a_one_line_error(
    pushed: Workspace, tmp_path: Path
) -> None:
    (tmp_path / "afile").write_text("")
    for folder in (tmp_path / "afile" / "azure", Path("/proc/modelyard-cannot")):
        result = CliRunner().invoke(
            cli,
            ["-C", str(pushed.root), "deploy", "churn@1", "--target", "azureml", "--name",
             "churn-api", "--dry-run", "-o", "yaml", "--dry-run-dir", str(folder)],
        )  # fmt: skip
        assert result.exit_code == 2, result.output
        assert isinstance(result.exception, SystemExit)  # not a traceback
        assert f"--dry-run-dir {folder}: " in result.output
        assert "managedOnlineEndpoint" not in result.output  # nothing printed either


def test_what_azure_ml_refuses_is_refused_before_anything(
    pushed: Workspace, azure_ml_python: Path, tmp_path: Path
) -> None:
    # The checker itself refuses what the SDK refuses (so a passing load means something).
    bad = tmp_path / "bad.yml"
    bad.write_text(
        yaml.safe_dump(
            {
                "$schema": DEPLOYMENT_SCHEMA,
                "name": "b",
                "endpoint_name": "churn-api",
                "environment": {"image": IMAGE},
                "instance_count": "two",
                "replicas": 2,
            }
        )  # fmt: skip
    )
    (answer,) = load_with_azure_ml(azure_ml_python, [bad])
    assert "Unknown field" in answer["error"]
    assert "instance_count" in answer["error"]

    # modelyard refuses the same before it records anything.
    with pytest.raises(InvalidParameter, match="not an Azure ML endpoint name"):
        AzureMLOptions(endpoint="9-lives")
    with pytest.raises(InvalidParameter, match="mirrors at most 50"):
        AzureMLOptions(traffic="shadow", traffic_percent=60)
    with pytest.raises(InvalidParameter, match="traffic must be one of"):
        AzureMLOptions(traffic="linear")
    for bad in ({"subscription_id": "../x"}, {"resource_group": "rg/../../x"},
                {"resource_group": "rg."}, {"aml_workspace": "w\n"}):  # fmt: skip
        with pytest.raises(InvalidParameter, match="is not an Azure"):
            AzureMLOptions(**bad)
    AzureMLOptions(subscription_id="00000000-0000-0000-0000-000000000000",
                   resource_group="my_rg-(1).x", aml_workspace="ws-1")  # fmt: skip
    with pytest.raises(InvalidParameter, match="not an image repository"):
        AzureMLOptions(acr_repository="https://x.azurecr.io/models")
    spec = deploy.DeploySpec("churn@1", "ab", target="azureml")
    with pytest.raises(InvalidParameter, match="not an Azure ML endpoint name"):
        deploy.deploy(spec, workspace=pushed)
    assert pushed.store.deployments.find("ab") is None
    # A real rollout names the Azure ML workspace (a dry run needs none of it).
    spec = deploy.DeploySpec("churn@1", "churn-api", target="azureml")
    with pytest.raises(InvalidParameter, match="--subscription-id, --resource-group"):
        deploy.deploy(spec, workspace=pushed)


class RecordingAzureML:
    """An :class:`AzureMLApi` that keeps what it is given (the documents are checked with
    azure-ai-ml afterwards) and can refuse a deployment the way Azure ML reports one."""

    def __init__(self) -> None:
        self.applied: list[dict[str, Any]] = []
        self.fail_next_deployment: str | None = None

    def apply(self, document: dict[str, Any]) -> None:
        if document["$schema"] == DEPLOYMENT_SCHEMA and self.fail_next_deployment:
            reason, self.fail_next_deployment = self.fail_next_deployment, None
            raise RolloutFailed(f"Azure ML refused {document['name']}: {reason}", reason)
        self.applied.append(document)


def test_blue_green_canary_shadow_and_rollback(
    pushed: Workspace, azure_ml_python: Path, tmp_path: Path
) -> None:
    ws = pushed
    api = RecordingAzureML()
    _api: AzureMLApi = api  # held to the protocol by the type checker

    def roll(ref: str, **options: Any) -> list[dict[str, Any]]:
        before = len(api.applied)
        spec = deploy.DeploySpec(
            ref, "churn-api", target="azureml", options=AzureMLOptions(client=api, **options)
        )
        dep = deploy.deploy(spec, workspace=ws)
        assert dep.current is not None
        assert dep.current.model_ref == ref
        return api.applied[before:]

    first = roll("churn@1")
    assert [d["$schema"] for d in first] == [ENDPOINT_SCHEMA, DEPLOYMENT_SCHEMA, ENDPOINT_SCHEMA]
    assert first[1]["name"] == "blue"
    assert first[2]["traffic"] == {"blue": 100}

    # A canary: churn@2 goes to green, which answers 20 %; the endpoint is not created again.
    canary = roll("churn@2", traffic="canary", traffic_percent=20)
    assert [d["$schema"] for d in canary] == [DEPLOYMENT_SCHEMA, ENDPOINT_SCHEMA]
    assert canary[0]["name"] == "green"
    assert canary[0]["environment"]["image"].endswith(DIGESTS[2])
    assert canary[1]["traffic"] == {"green": 20, "blue": 80}
    assert canary[1]["mirror_traffic"] == {}

    # A shadow: churn@1 again, into blue (the slot not written last), mirrored 10 %, while
    # green keeps the live traffic.
    shadow = roll("churn@1", traffic="shadow", traffic_percent=10)
    assert shadow[0]["name"] == "blue"
    assert shadow[1]["traffic"] == {"blue": 0, "green": 100}
    assert shadow[1]["mirror_traffic"] == {"blue": 10}

    # A deployment Azure ML refuses leaves the traffic where it was and the revision failed.
    api.fail_next_deployment = "ImagePullFailure: unauthorized"
    with pytest.raises(RolloutFailed, match="ImagePullFailure"):
        roll("churn@2")
    dep = ws.store.deployments.get("churn-api")
    assert dep.revisions[-1].status == "failed"
    assert dep.config["endpoint_traffic"] == {"blue": 0, "green": 100}

    # Rollback: the version before the current one, into the other slot with the options read
    # back from the record, all at once (a shadow or canary was a choice about one rollout).
    dep = deploy.rollback("churn-api", workspace=ws, api=api)
    assert dep.current is not None
    assert dep.current.model_ref == "churn@2"
    back = api.applied[-2:]
    assert back[0]["name"] == "green"
    assert (back[1]["traffic"], back[1]["mirror_traffic"]) == ({"green": 100, "blue": 0}, {})

    # Every document Azure ML was given loads with its SDK, as az ml would load it.
    answers = _loaded(azure_ml_python, api.applied, tmp_path / "applied")
    assert [a["kind"] for a in answers[:3]] == [
        "ManagedOnlineEndpoint", "ManagedOnlineDeployment", "ManagedOnlineEndpoint"]  # fmt: skip
    assert answers[4]["rest"]["properties"]["traffic"] == {"green": 20, "blue": 80}
    assert answers[6]["rest"]["properties"]["mirrorTraffic"] == {"blue": 10}

    # Recorded like every deployment.
    result = CliRunner().invoke(cli, ["-C", str(ws.root), "deployments", "list"])
    assert result.exit_code == 0, result.output
    (row,) = [line.split() for line in result.output.splitlines() if "churn-api" in line]
    assert {"azureml", "churn@2"} <= set(row)
    events = [e.message for e in deploy.events("churn-api", workspace=ws)]
    assert "online-endpoint churn-api traffic green=20, blue=80" in events
    assert deploy.get_target("azureml").address(dep) == "azureml:churn-api"


# -- the image, run as Azure ML runs it ---------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_model_image_serves_as_azure_ml_starts_it(churn_image: Workspace, engine: Any) -> None:
    """The deployment document drives the run: its image's own command (Azure ML runs a custom
    container's ENTRYPOINT/CMD), its environment plus what Azure ML sets, its liveness and
    readiness routes polled until 200 and a prediction through its scoring route, each on the
    port it names. A route or port the image does not serve fails here."""
    import uuid

    from _deploy_helpers import post_json, wait_ok
    from modelyard.deploy.azureml import documents
    from modelyard.deploy.target import RolloutRequest
    from modelyard.models import resolve

    version = resolve("churn@1", churn_image)
    assert version.image_id is not None
    spec = deploy.DeploySpec("churn@1", "churn-api", target="azureml")
    request = RolloutRequest(churn_image, spec, version, f"x/churn@{DIGESTS[1]}", None)
    (_, deployment, _) = documents(request)
    routes = deployment["environment"]["inference_config"]
    environment = {
        **deployment.get("environment_variables", {}),
        # What Azure ML sets in every inference container (the model folder it would mount).
        "AZUREML_MODEL_DIR": "/var/azureml-app/azureml-models/churn/1",
        "AML_APP_ROOT": "/var/azureml-app",
    }
    ports = {route["port"] for route in routes.values()}
    name = f"modelyard-azureml-{uuid.uuid4().hex[:8]}"
    args = ["run", "-d", "--name", name]
    for key, value in environment.items():
        args += ["-e", f"{key}={value}"]
    for port in ports:
        args += ["-p", f"127.0.0.1::{port}"]
    engine.run([*args, version.image_id])
    try:
        published = {
            port: engine.run(["port", name, f"{port}/tcp"]).stdout.decode().split()[0]
            for port in ports
        }

        def url(route: str) -> str:
            return f"http://{published[routes[route]['port']]}{routes[route]['path']}"

        wait_ok(url("liveness_route"))
        wait_ok(url("readiness_route"))
        headers = {"azureml-model-deployment": deployment["name"], "x-ms-request-id": "r-1"}
        answer = post_json(url("scoring_route"), {"inputs": [[0.5, 0.1, 0.2], [-0.5, 0.1, 0.2]]},
                           headers)  # fmt: skip
        assert answer == {"predictions": [1, 0]}
    finally:
        engine.run(["rm", "-f", name], check=False)


def test_deploy_strategies_map_onto_mirror_traffic_and_split(
    pushed: Workspace, azure_ml_python: Path, tmp_path: Path
) -> None:
    """``deploy --strategy shadow|canary`` on Azure ML is Azure ML's own: mirror_traffic for a
    shadow, a traffic split at the first step for a canary (no modelyard controller)."""
    api = RecordingAzureML()
    options = AzureMLOptions(client=api)
    spec = deploy.DeploySpec("churn@1", "churn-api", target="azureml", options=options)
    deploy.deploy(spec, workspace=pushed)

    def dry_run(*flags: str) -> list[dict[str, Any]]:
        result = CliRunner().invoke(
            cli,
            ["-C", str(pushed.root), "deploy", "churn@2", "--target", "azureml", "--name",
             "churn-api", *flags, "--dry-run", "-o", "yaml"],
        )  # fmt: skip
        assert result.exit_code == 0, result.output
        return list(yaml.safe_load_all(result.output))

    shadow = dry_run("--strategy", "shadow", "--sample", "0.2")
    canary = dry_run("--strategy", "canary", "--steps", "10,50,100")
    assert [d["name"] for d in shadow] == ["green", "churn-api"]
    assert (shadow[1]["traffic"], shadow[1]["mirror_traffic"]) == (
        {"green": 0, "blue": 100}, {"green": 20})  # fmt: skip
    assert (canary[1]["traffic"], canary[1]["mirror_traffic"]) == ({"green": 10, "blue": 90}, {})
    answers = _loaded(azure_ml_python, [*shadow, *canary], tmp_path / "strategies")
    assert answers[1]["rest"]["properties"]["mirrorTraffic"] == {"green": 20}
    assert answers[3]["rest"]["properties"]["traffic"] == {"green": 10, "blue": 90}
    # Azure ML mirrors at most 50 %: refused before anything is applied.
    result = CliRunner().invoke(
        cli,
        ["-C", str(pushed.root), "deploy", "churn@2", "--target", "azureml", "--name",
         "churn-api", "--strategy", "shadow", "--sample", "0.6", "--dry-run"],
    )  # fmt: skip
    assert result.exit_code != 0
    assert "mirrors at most 50" in result.output
