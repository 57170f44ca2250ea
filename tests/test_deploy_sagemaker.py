"""The ``sagemaker`` target, with no network and no credentials: the model image run exactly as
SageMaker runs it (``docker run IMAGE serve``, predictions through ``/ping`` and
``/invocations``), every API request validated against botocore's own SageMaker service model,
and rollouts and rollbacks driven through a real boto3 client held by ``botocore.stub.Stubber``
(which refuses any call it was not told to expect, so nothing reaches AWS)."""

from __future__ import annotations

import base64
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner

from modelyard import deploy
from modelyard.cli.main import cli
from modelyard.deploy.sagemaker import SageMakerOptions, ecr_credentials
from modelyard.errors import InvalidParameter, RolloutFailed
from modelyard.workspace import Workspace

ROLE = "arn:aws:iam::123456789012:role/modelyard-sagemaker"
REGION = "eu-west-1"
ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/models"
DIGESTS = {1: "sha256:" + "1" * 64, 2: "sha256:" + "2" * 64}
ROWS = [[0.5, 0.1, 0.2], [-0.5, 0.1, 0.2]]


# -- the image, run as SageMaker runs it ------------------------------------------------------
def _post(url: str, body: dict[str, Any]) -> Any:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"content-type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.loads(resp.read())


def _ping(url: str, deadline_s: float = 120) -> None:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{url}/ping", timeout=3) as resp:
                if resp.status == 200:
                    return
        except urllib.error.HTTPError as exc:
            exc.close()
        except OSError:
            pass
        time.sleep(0.3)
    pytest.fail(f"{url}/ping did not answer 200 in {deadline_s:.0f} s")


@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize("bind_port", [None, 9090], ids=["port-8080", "SAGEMAKER_BIND_TO_PORT"])
def test_the_model_image_serves_as_sagemaker_starts_it(
    churn_image: Workspace, engine: Any, bind_port: int | None
) -> None:
    from modelyard.models import resolve

    image = resolve("churn@1", churn_image).image_id
    assert image is not None
    port = bind_port or 8080
    name = f"modelyard-sagemaker-{uuid.uuid4().hex[:8]}"
    env = ["-e", f"SAGEMAKER_BIND_TO_PORT={bind_port}"] if bind_port else []
    # SageMaker: `docker run IMAGE serve`, the container's port published to the host.
    engine.run(["run", "-d", "--name", name, *env, "-p", f"127.0.0.1::{port}", image, "serve"])
    try:
        out = engine.run(["port", name, f"{port}/tcp"]).stdout.decode().split()[0]
        url = f"http://{out}"
        _ping(url)
        answer = _post(f"{url}/invocations", {"inputs": ROWS})
        assert answer == {"predictions": [1, 0]}
        answer = _post(
            f"{url}/invocations", {"dataframe_split": {"columns": [0, 1, 2], "data": ROWS}}
        )
        assert answer["predictions"] == [1, 0]
    finally:
        engine.run(["rm", "-f", name], check=False)


def test_the_entrypoint_takes_sagemakers_port_and_serve_argument() -> None:
    from modelyard.errors import ConfigError
    from modelyard.serving.__main__ import _port

    assert _port(8080, None) == 8080
    assert _port(8080, "") == 8080
    assert _port(8080, "9090") == 9090
    for bad in ("http", "0", "70000", "-1"):
        with pytest.raises(ConfigError, match="SAGEMAKER_BIND_TO_PORT"):
            _port(8080, bad)


# -- the API requests ---------------------------------------------------------------------------
@pytest.fixture
def pushed(sqlite_workspace: Workspace) -> Workspace:
    """``churn@1`` and ``churn@2`` recorded as pushed (digests made up: nothing is pulled)."""
    pytest.importorskip("sklearn")
    from _deploy_helpers import register_churn

    ws = sqlite_workspace
    register_churn(ws, 2)
    for version, digest in DIGESTS.items():
        ws.store.models.set_image(
            "churn",
            version,
            image_id=None,
            image_digest=digest,
            image_size=None,
            image_ref=f"127.0.0.1:5000/models/churn@{digest}",
        )
    return ws


def _validate(calls: list[dict[str, Any]]) -> None:
    """Every request passes botocore's own parameter validator for its operation."""
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("sagemaker")
    for call in calls:
        shape = model.operation_model(call["operation"]).input_shape
        report = ParamValidator().validate(call["params"], shape)
        assert not report.has_errors(), report.generate_report()


def _dry_run(ws: Workspace, ref: str, *flags: str) -> list[dict[str, Any]]:
    result = CliRunner().invoke(
        cli,
        ["-C", str(ws.root), "deploy", ref, "--target", "sagemaker", "--name", "churn-api",
         "--role-arn", ROLE, "--region", REGION, *flags, "--dry-run", "-o", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    calls: list[dict[str, Any]] = json.loads(result.output)
    _validate(calls)
    return calls


def test_dry_run_prints_requests_botocore_accepts(pushed: Workspace) -> None:
    calls = _dry_run(pushed, "churn@1", "--instance-type", "ml.c5.xlarge", "--replicas", "2")
    assert [c["operation"] for c in calls] == [
        "CreateModel", "CreateEndpointConfig", "CreateEndpoint"]  # fmt: skip
    model, config, endpoint = (c["params"] for c in calls)
    assert model["ExecutionRoleArn"] == ROLE
    assert model["PrimaryContainer"]["Image"] == f"127.0.0.1:5000/models/churn@{DIGESTS[1]}"
    (variant,) = config["ProductionVariants"]
    assert variant["ModelName"] == model["ModelName"]
    assert (variant["InstanceType"], variant["InitialInstanceCount"]) == ("ml.c5.xlarge", 2)
    assert endpoint["EndpointConfigName"] == config["EndpointConfigName"]
    assert endpoint["EndpointName"] == "churn-api"
    # The ECR repository the image was pushed to, by digest.
    calls = _dry_run(pushed, "churn@1", "--ecr-repository", ECR)
    assert calls[0]["params"]["PrimaryContainer"]["Image"] == f"{ECR}@{DIGESTS[1]}"
    assert pushed.store.deployments.find("churn-api") is None  # a dry run records nothing


def test_missing_role_and_bad_options_are_refused_before_anything(pushed: Workspace) -> None:
    result = CliRunner().invoke(
        cli, ["-C", str(pushed.root), "deploy", "churn@1", "--target", "sagemaker", "--dry-run"]
    )
    assert result.exit_code != 0
    assert "--role-arn arn:aws:iam::ACCOUNT:role/NAME" in result.output
    with pytest.raises(InvalidParameter, match="not an IAM role ARN"):
        SageMakerOptions(role_arn="admin")
    with pytest.raises(InvalidParameter, match="not an ECR repository"):
        SageMakerOptions(role_arn=ROLE, ecr_repository="docker.io/library/x")
    with pytest.raises(InvalidParameter, match="traffic must be one of"):
        SageMakerOptions(role_arn=ROLE, traffic="blue")
    spec = deploy.DeploySpec("churn@1", "api", target="sagemaker")
    with pytest.raises(InvalidParameter, match="--role-arn"):
        deploy.deploy(spec, workspace=pushed)
    assert pushed.store.deployments.find("api") is None


# -- rollouts through a stubbed boto3 client ----------------------------------------------------
ARN = "arn:aws:sagemaker:eu-west-1:123456789012"


@pytest.fixture
def sagemaker() -> Iterator[tuple[Any, Any]]:
    import boto3
    from botocore.stub import Stubber

    client = boto3.client(
        "sagemaker",
        region_name=REGION,
        aws_access_key_id="x",
        aws_secret_access_key="x",
    )
    with Stubber(client) as stubber:
        yield client, stubber
        stubber.assert_no_pending_responses()


def _expect(stubber: Any, calls: list[dict[str, Any]], *states: str, reason: str = "") -> None:
    """The stub answers ``calls`` (exactly these parameters), then DescribeEndpoint ``states``."""
    answers = {
        "CreateModel": lambda p: {"ModelArn": f"{ARN}:model/{p['ModelName'].lower()}"},
        "CreateEndpointConfig": lambda p: {
            "EndpointConfigArn": f"{ARN}:endpoint-config/{p['EndpointConfigName'].lower()}"
        },
        "CreateEndpoint": lambda p: {"EndpointArn": f"{ARN}:endpoint/{p['EndpointName']}"},
        "UpdateEndpoint": lambda p: {"EndpointArn": f"{ARN}:endpoint/{p['EndpointName']}"},
    }
    from modelyard.deploy.sagemaker import _method

    for call in calls:
        params = call["params"]
        stubber.add_response(_method(call["operation"]), answers[call["operation"]](params), params)
    endpoint = calls[-1]["params"]["EndpointName"]
    now = datetime.now(UTC)
    for state in states:
        described = {
            "EndpointName": endpoint,
            "EndpointArn": f"{ARN}:endpoint/{endpoint}",
            "EndpointStatus": state,
            "CreationTime": now,
            "LastModifiedTime": now,
        }
        if reason:
            described["FailureReason"] = reason
        stubber.add_response("describe_endpoint", described, {"EndpointName": endpoint})


def test_rollout_update_and_rollback_send_exactly_the_planned_requests(
    pushed: Workspace, sagemaker: tuple[Any, Any]
) -> None:
    client, stubber = sagemaker
    ws = pushed
    first = SageMakerOptions(role_arn=ROLE, region=REGION, poll_s=0, client=client)
    spec = deploy.DeploySpec("churn@1", "churn-api", target="sagemaker", options=first)
    calls = deploy.plan(spec, workspace=ws)
    assert calls is not None
    _validate(calls)
    _expect(stubber, calls, "Creating", "InService")
    dep = deploy.deploy(spec, workspace=ws)
    assert dep.current is not None
    assert (dep.target, dep.current.model_ref, dep.port) == ("sagemaker", "churn@1", None)
    assert dep.config["endpoint"] == "churn-api"

    # An update: a blue/green canary with an alarm that rolls it back.
    canary = SageMakerOptions(
        role_arn=ROLE,
        region=REGION,
        traffic="canary",
        traffic_percent=25,
        wait_s=120,
        alarms=("churn-5xx",),
        poll_s=0,
        client=client,
    )
    spec = deploy.DeploySpec("churn@2", "churn-api", target="sagemaker", options=canary)
    calls = deploy.plan(spec, workspace=ws)
    assert calls is not None
    _validate(calls)
    assert calls[-1]["operation"] == "UpdateEndpoint"
    config = calls[-1]["params"]["DeploymentConfig"]
    assert config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"] == {
        "Type": "CANARY",
        "WaitIntervalInSeconds": 120,
        "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 25},
    }
    assert config["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": "churn-5xx"}]}
    _expect(stubber, calls, "Updating", "InService")
    dep = deploy.deploy(spec, workspace=ws)
    assert dep.current is not None
    assert dep.current.model_ref == "churn@2"

    # The rollback rolls churn@1 out again the same way (options read back from the record).
    dep = ws.store.deployments.get("churn-api")
    redo = SageMakerOptions.from_settings(dep.config, client=client)
    assert redo == canary
    timeout = deploy.get_target("sagemaker").default_timeout_s
    back = deploy.DeploySpec(
        "churn@1", "churn-api", target="sagemaker", options=redo, timeout_s=timeout
    )
    calls = deploy.plan(back, workspace=ws)
    assert calls is not None
    _validate(calls)
    assert calls[0]["params"]["PrimaryContainer"]["Image"].endswith(DIGESTS[1])
    assert calls[-1]["operation"] == "UpdateEndpoint"
    _expect(stubber, calls, "InService")
    dep = deploy.rollback("churn-api", workspace=ws, api=client)
    assert dep.current is not None
    assert dep.current.model_ref == "churn@1"
    assert [r.model_ref for r in dep.revisions] == ["churn@1", "churn@2", "churn@1"]

    # Recorded like every deployment.
    result = CliRunner().invoke(cli, ["-C", str(ws.root), "deployments", "list"])
    assert result.exit_code == 0, result.output
    (row,) = [line.split() for line in result.output.splitlines() if "churn-api" in line]
    assert {"sagemaker", "churn@1"} <= set(row)
    events = [e.message for e in deploy.events("churn-api", workspace=ws)]
    assert any(m.startswith("UpdateEndpoint churn-api") for m in events)
    assert deploy.get_target("sagemaker").address(dep) == f"sagemaker:{REGION}/churn-api"


def test_a_failed_endpoint_is_a_failed_revision(
    pushed: Workspace, sagemaker: tuple[Any, Any]
) -> None:
    client, stubber = sagemaker
    options = SageMakerOptions(role_arn=ROLE, region=REGION, poll_s=0, client=client)
    spec = deploy.DeploySpec("churn@1", "api", target="sagemaker", options=options)
    calls = deploy.plan(spec, workspace=pushed)
    assert calls is not None
    _expect(stubber, calls, "Failed", reason="CannotStartContainerError: no /ping")
    with pytest.raises(RolloutFailed, match="CannotStartContainerError"):
        deploy.deploy(spec, workspace=pushed)
    dep = pushed.store.deployments.get("api")
    assert [r.status for r in dep.revisions] == ["failed"]
    # The next attempt creates the endpoint again rather than updating one that never served.
    again = deploy.plan(spec, workspace=pushed)
    assert again is not None
    assert again[-1]["operation"] == "CreateEndpoint"


def test_ecr_credentials_come_from_the_authorization_token() -> None:
    import boto3
    from botocore.stub import Stubber

    ecr = boto3.client("ecr", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    token = base64.b64encode(b"AWS:secret-password").decode()
    with Stubber(ecr) as stubber:
        stubber.add_response(
            "get_authorization_token",
            {
                "authorizationData": [
                    {
                        "authorizationToken": token,
                        "proxyEndpoint": f"https://{ECR.split('/')[0]}",
                        "expiresAt": datetime.now(UTC),
                    }
                ]
            },  # fmt: skip
            {},
        )
        login = ecr_credentials(ecr)
        stubber.assert_no_pending_responses()
    assert (login.username, login.password, login.registry) == (
        "AWS", "secret-password", ECR.split("/")[0])  # fmt: skip
