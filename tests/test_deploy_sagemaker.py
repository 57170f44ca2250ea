"""The ``sagemaker`` target, with no network and no credentials: the model image run exactly as
SageMaker runs it (``docker run IMAGE serve``, predictions through ``/ping`` and
``/invocations``), every API request validated against botocore's own SageMaker service model,
and rollouts and rollbacks driven through a real boto3 client held by ``botocore.stub.Stubber``
(which refuses any call it was not told to expect, so nothing reaches AWS)."""

from __future__ import annotations

import base64
import json
import os
import urllib.request
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from click.testing import CliRunner

from _deploy_helpers import DIGESTS, post_json, wait_ok
from modelyard import deploy
from modelyard.cli.main import cli
from modelyard.deploy.sagemaker import SageMakerOptions, ecr_credentials
from modelyard.errors import InvalidParameter, RolloutFailed
from modelyard.workspace import Workspace

ROLE = "arn:aws:iam::123456789012:role/modelyard-sagemaker"
REGION = "eu-west-1"
ECR = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/models"
ROWS = [[0.5, 0.1, 0.2], [-0.5, 0.1, 0.2]]


# -- the image, run as SageMaker runs it ------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "bind_port", [None, 9090], ids=["port-8080", "SAGEMAKER_BIND_TO_PORT-read-only-opt-ml-model"]
)
def test_the_model_image_serves_as_sagemaker_starts_it(
    churn_image: Workspace, engine: Any, bind_port: int | None, tmp_path: Any
) -> None:
    from modelyard.models import resolve

    image = resolve("churn@1", churn_image).image_id
    assert image is not None
    port = bind_port or 8080
    name = f"modelyard-sagemaker-{uuid.uuid4().hex[:8]}"
    args = ["run", "-d", "--name", name]
    if bind_port:
        # The other way SageMaker may start it: its port variable, a read-only root with a
        # scratch /tmp, and the model data of CreateModel's ModelDataUrl under /opt/ml/model
        # (read-only; the model served is the image's own, so that folder is not read).
        model_data = tmp_path / "model"
        model_data.mkdir()
        (model_data / "model.tar.gz.extracted").write_text("SageMaker's model data\n")
        model_data.chmod(0o755)
        args += ["-e", f"SAGEMAKER_BIND_TO_PORT={bind_port}", "--read-only",
                 "--tmpfs", "/tmp", "-v", f"{model_data}:/opt/ml/model:ro"]  # fmt: skip
    # SageMaker: `docker run IMAGE serve`, the container's port published to the host.
    engine.run([*args, "-p", f"127.0.0.1::{port}", image, "serve"])
    try:
        out = engine.run(["port", name, f"{port}/tcp"]).stdout.decode().split()[0]
        url = f"http://{out}"
        wait_ok(f"{url}/ping")
        answer = post_json(f"{url}/invocations", {"inputs": ROWS})
        assert answer == {"predictions": [1, 0]}
        answer = post_json(
            f"{url}/invocations", {"dataframe_split": {"columns": [0, 1, 2], "data": ROWS}}
        )
        assert answer["predictions"] == [1, 0]
        if bind_port:
            # The prediction log could not be made under the read-only root: it is in /tmp.
            from modelyard.image_contract import SAGEMAKER_LOG_DIR

            engine.run(["exec", name, "test", "-d", SAGEMAKER_LOG_DIR])
            logs = engine.run(["logs", name]).stderr.decode()
            assert f"the prediction log goes to {SAGEMAKER_LOG_DIR}" in logs
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
    from _deploy_helpers import register_pushed_churn

    return register_pushed_churn(sqlite_workspace)


def _validate(calls: list[dict[str, Any]]) -> None:
    """Every request passes botocore's own parameter validator for its operation."""
    import botocore.session
    from botocore.validate import ParamValidator

    model = botocore.session.get_session().get_service_model("sagemaker")
    for call in calls:
        shape = model.operation_model(call["operation"]).input_shape
        report = ParamValidator().validate(call["params"], shape)
        assert not report.has_errors(), report.generate_report()


def _plan(spec: deploy.DeploySpec, ws: Workspace) -> list[dict[str, Any]]:
    """What ``spec`` would send, each request checked by botocore's validator."""
    calls = deploy.plan(spec, workspace=ws)
    assert calls is not None
    _validate(calls)
    return calls


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
    for region in ("../x", "eu-west-1\n", "", "-eu"):  # recorded, and a host name to boto3
        with pytest.raises(InvalidParameter, match="is not an AWS region"):
            SageMakerOptions(role_arn=ROLE, region=region)
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
    calls = _plan(spec, ws)
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
    calls = _plan(spec, ws)
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
    calls = _plan(back, ws)
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
    calls = _plan(spec, pushed)
    _expect(stubber, calls, "Failed", reason="CannotStartContainerError: no /ping")
    with pytest.raises(RolloutFailed, match="CannotStartContainerError"):
        deploy.deploy(spec, workspace=pushed)
    dep = pushed.store.deployments.get("api")
    assert [r.status for r in dep.revisions] == ["failed"]
    # The next attempt creates the endpoint again rather than updating one that never served.
    again = deploy.plan(spec, workspace=pushed)
    assert again is not None
    assert again[-1]["operation"] == "CreateEndpoint"


def test_status_describes_the_live_endpoint(
    pushed: Workspace, sagemaker: tuple[Any, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``deployments status`` asks SageMaker (DescribeEndpoint) how many instances serve now,
    and says so clearly when it cannot ask."""
    from modelyard.deploy import sagemaker as target
    from modelyard.errors import DeployError

    client, stubber = sagemaker
    options = SageMakerOptions(role_arn=ROLE, region=REGION, poll_s=0, client=client)
    spec = deploy.DeploySpec("churn@1", "api", target="sagemaker", options=options)
    calls = _plan(spec, pushed)
    _expect(stubber, calls, "InService")
    deploy.deploy(spec, workspace=pushed)
    # The record holds no client: status makes one from the recorded region.
    made: list[str] = []

    def recorded_client(opts: SageMakerOptions) -> Any:
        made.append(opts.region)
        return client

    monkeypatch.setattr(target, "_client", recorded_client)
    now = datetime.now(UTC)

    def described(state: str, *counts: int) -> dict[str, Any]:
        variants = [
            {"VariantName": f"v{i}", "CurrentInstanceCount": n} for i, n in enumerate(counts)
        ]
        return {
            "EndpointName": "api",
            "EndpointArn": f"{ARN}:endpoint/api",
            "EndpointStatus": state,
            "CreationTime": now,
            "LastModifiedTime": now,
            "ProductionVariants": variants,
        }

    stubber.add_response("describe_endpoint", described("InService", 2, 1), {"EndpointName": "api"})
    assert deploy.status("api", workspace=pushed).ready_replicas == 3
    stubber.add_response("describe_endpoint", described("Updating", 2), {"EndpointName": "api"})
    assert deploy.status("api", workspace=pushed).ready_replicas == 0
    assert made == [REGION, REGION]
    stubber.add_client_error(
        "describe_endpoint", "ValidationException", "Could not find endpoint", 400
    )
    with pytest.raises(DeployError, match="cannot describe SageMaker endpoint api in eu-west-1"):
        deploy.status("api", workspace=pushed)


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


def _serving(ws: Workspace, client: Any, stubber: Any) -> list[dict[str, Any]]:
    """churn@1 rolled out as ``churn-api`` (the endpoint created); the requests it sent."""
    first = SageMakerOptions(role_arn=ROLE, region=REGION, poll_s=0, client=client)
    spec = deploy.DeploySpec("churn@1", "churn-api", target="sagemaker", options=first)
    calls = _plan(spec, ws)
    _expect(stubber, calls, "InService")
    deploy.deploy(spec, workspace=ws)
    return calls


def test_a_shadow_variant_beside_the_serving_model(
    pushed: Workspace, sagemaker: tuple[Any, Any]
) -> None:
    client, stubber = sagemaker
    calls = _serving(pushed, client, stubber)
    serving = calls[0]["params"]["ModelName"]

    shadow = SageMakerOptions(
        role_arn=ROLE, region=REGION, traffic="shadow", traffic_percent=20, poll_s=0,
        client=client, alarms=("churn-5xx",),
    )  # fmt: skip
    spec = deploy.DeploySpec("churn@2", "churn-api", target="sagemaker", options=shadow)
    calls = _plan(spec, pushed)
    model, config, update = (c["params"] for c in calls)
    # churn@2 is a new model in the shadow variant; churn@1's model keeps every request.
    (production,) = config["ProductionVariants"]
    (copy,) = config["ShadowProductionVariants"]
    assert production["ModelName"] == serving
    assert (copy["ModelName"], copy["InitialVariantWeight"]) == (model["ModelName"], 0.2)
    assert model["PrimaryContainer"]["Image"].endswith(DIGESTS[2])
    routing = update["DeploymentConfig"]["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"]
    assert routing["Type"] == "ALL_AT_ONCE"
    assert update["DeploymentConfig"]["AutoRollbackConfiguration"]["Alarms"] == [
        {"AlarmName": "churn-5xx"}]  # fmt: skip
    _expect(stubber, calls, "Updating", "InService")
    dep = deploy.deploy(spec, workspace=pushed)
    assert dep.config["model"] == serving  # the model answering is still churn@1's
    # A rollback (or a retrain) goes all at once: a shadow was a choice about one rollout.
    redo = deploy.get_target("sagemaker").recorded_options(dep, client=client)
    assert isinstance(redo, SageMakerOptions)
    assert (redo.traffic, redo.alarms) == ("all_at_once", ("churn-5xx",))


class Captured:
    """Equal to anything, keeping what it was compared with (a Stubber expected parameter)."""

    value: Any = None

    def __eq__(self, other: object) -> bool:
        self.value = other
        return True

    __hash__ = None  # type: ignore[assignment]


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_deploy_pushes_to_ecr_with_the_authorization_token(
    churn_image: Workspace, engine: Any, sagemaker: tuple[Any, Any]
) -> None:
    """``--push``: the built image goes to the registry of ECR's authorization token (here the
    htpasswd registry of scripts/registry.sh, answered by a stubbed GetAuthorizationToken) and
    CreateModel names it in the ECR repository by the digest the registry gave it."""
    import boto3
    from botocore.stub import Stubber

    from conftest import registry_up, require_service
    from modelyard.models import resolve

    require_service(registry_up("127.0.0.1:5001"), "no registry on 127.0.0.1:5001")
    client, stubber = sagemaker
    password = os.environ.get("REGISTRY_TEST_PASSWORD", "modelyard-test-password")
    token = base64.b64encode(f"modelyard:{password}".encode()).decode()
    ecr = boto3.client("ecr", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x")
    repository = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/churn"
    options = SageMakerOptions(
        role_arn=ROLE, region=REGION, ecr_repository=repository, push=True, poll_s=0,
        client=client, ecr_client=ecr, engine=engine,
    )  # fmt: skip
    name = f"churn-{uuid.uuid4().hex[:8]}"
    spec = deploy.DeploySpec("churn@1", name, target="sagemaker", options=options)
    # The dry run names the tag the push will write (or, when the session's workspace pushed
    # churn@1 before, the digest that push recorded), and pushes nothing.
    before = resolve("churn@1", churn_image).image_digest
    planned = _plan(spec, churn_image)
    named = f"{repository}@{before}" if before else f"{repository}:1"
    assert planned[0]["params"]["PrimaryContainer"]["Image"] == named
    assert resolve("churn@1", churn_image).image_digest == before
    image = Captured()
    with Stubber(ecr) as ecr_stub:
        ecr_stub.add_response(
            "get_authorization_token",
            {"authorizationData": [{"authorizationToken": token,
                                    "proxyEndpoint": "https://127.0.0.1:5001",
                                    "expiresAt": datetime.now(UTC)}]},
            {},
        )  # fmt: skip
        calls = [dict(c) for c in planned]
        calls[0] = {**calls[0], "params": {**calls[0]["params"]}}
        calls[0]["params"]["PrimaryContainer"] = {"Image": image, "Mode": "SingleModel"}
        _expect(stubber, calls, "InService")
        dep = deploy.deploy(spec, workspace=churn_image)
        ecr_stub.assert_no_pending_responses()
    version = resolve("churn@1", churn_image)
    assert version.image_ref is not None
    assert version.image_digest is not None
    assert version.image_ref == f"127.0.0.1:5001/churn@{version.image_digest}"
    assert image.value == f"{repository}@{version.image_digest}"
    # The registry has it under that digest (asked with the same credentials).
    request = urllib.request.Request(
        f"http://127.0.0.1:5001/v2/churn/manifests/{version.image_digest}",
        method="HEAD",
        headers={
            "Authorization": f"Basic {token}",
            "Accept": "application/vnd.docker.distribution.manifest.v2+json, "
            "application/vnd.oci.image.manifest.v1+json, "
            "application/vnd.oci.image.index.v1+json",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as resp:
        assert resp.status == 200
    events = [e.message for e in deploy.events(name, workspace=churn_image)]
    assert f"pushed {version.image_ref}" in events
    assert dep.current is not None


def test_deploy_strategies_map_onto_shadow_variants_and_traffic_shifting(
    pushed: Workspace, sagemaker: tuple[Any, Any]
) -> None:
    """``deploy --strategy shadow|canary`` on SageMaker is SageMaker's own: a shadow variant,
    or blue/green canary / linear traffic shifting (no modelyard controller in between)."""
    client, stubber = sagemaker
    calls = _serving(pushed, client, stubber)

    _, config, _ = _dry_run(pushed, "churn@2", "--strategy", "shadow", "--sample", "0.25")
    assert config["params"]["ShadowProductionVariants"][0]["InitialVariantWeight"] == 0.25
    assert config["params"]["ProductionVariants"][0]["ModelName"] == calls[0]["params"][
        "ModelName"]  # fmt: skip
    steps = ",".join(str(10 * i) for i in range(1, 11))
    *_, update = _dry_run(pushed, "churn@2", "--strategy", "canary", "--steps", steps,
                          "--interval", "5m")  # fmt: skip
    routing = update["params"]["DeploymentConfig"]["BlueGreenUpdatePolicy"][
        "TrafficRoutingConfiguration"]  # fmt: skip
    assert routing == {"Type": "LINEAR", "WaitIntervalInSeconds": 300,
                       "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 10}}  # fmt: skip
    *_, update = _dry_run(pushed, "churn@2", "--strategy", "canary", "--steps", "5,50,100")
    routing = update["params"]["DeploymentConfig"]["BlueGreenUpdatePolicy"][
        "TrafficRoutingConfiguration"]  # fmt: skip
    assert routing == {"Type": "CANARY", "WaitIntervalInSeconds": 600,
                       "CanarySize": {"Type": "CAPACITY_PERCENT", "Value": 5}}  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (("--strategy", "canary", "--steps", "50,10"), "canary steps must grow"),
        (("--strategy", "canary", "--steps", "5,5,100"), "canary steps must grow"),
        (("--strategy", "canary", "--interval", "9" * 400 + "d"), "at most 3650 days"),
        (("--strategy", "shadow", "--sample", "2"), "not in the range"),
    ],
)
def test_bad_strategy_flags_are_one_line_errors(
    pushed: Workspace, flags: tuple[str, ...], message: str
) -> None:
    result = CliRunner().invoke(
        cli,
        ["-C", str(pushed.root), "deploy", "churn@2", "--target", "sagemaker", "--name", "api",
         "--role-arn", ROLE, *flags, "--dry-run", "-o", "json"],
    )  # fmt: skip
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit), result.output  # not a traceback
    assert message in result.output
    assert pushed.store.deployments.find("api") is None
