"""Progressive rollouts on the ``local`` target with real gunicorn servers: a candidate that
answers well goes through shadow and canary steps and serves; candidates that fail 5 % of
requests, add 50 ms or crash are aborted at the first step while the serving version keeps
answering every client request."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from click.testing import CliRunner

from _deploy_helpers import Load
from _variant_models import Crashy, Flaky, Sign, SignToo, Slow, register
from modelyard import deploy
from modelyard.cli.main import cli
from modelyard.deploy.probe import free_port
from modelyard.errors import RolloutAborted
from modelyard.monitor import progressive as pg
from modelyard.monitor.analysis import Thresholds, read_window
from modelyard.monitor.windows import prediction_log_dir
from modelyard.workspace import Workspace

pytest.importorskip("gunicorn")
pytestmark = pytest.mark.slow

NAME = "sign-api"
FAST = Thresholds(min_requests=10, min_labels=10_000)
# A healthy candidate's tail on a loaded test machine: scheduling noise, not the model.
LENIENT = Thresholds(min_requests=10, min_labels=10_000, latency_p99_slack_ms=150)


@pytest.fixture
def served(sqlite_workspace: Workspace) -> Iterator[tuple[Workspace, int, str]]:
    ws = sqlite_workspace
    port = free_port()
    v1 = register(ws, Sign())
    deploy.deploy(deploy.DeploySpec(v1, NAME, target="local", port=port), workspace=ws)
    yield ws, port, v1
    deploy.stop(NAME, workspace=ws)


def _spec(ref: str, port: int, strategy: str) -> deploy.DeploySpec:
    return deploy.DeploySpec(ref, NAME, target="local", port=port, strategy=strategy)


def test_shadow_then_canary_promote_a_good_candidate(
    served: tuple[Workspace, int, str],
) -> None:
    ws, port, v1 = served
    v2, v3 = register(ws, SignToo()), register(ws, SignToo())
    url = f"http://127.0.0.1:{port}"
    with Load(url, model="sign") as load:
        load.wait_ok(20)
        shadow = pg.rollout(
            _spec(v2, port, "shadow"),
            pg.RolloutPlan((pg.shadow_step(1.0, 20, requests=40),), LENIENT),
            workspace=ws,
        )
        canary = pg.rollout(
            _spec(v3, port, "canary"),
            pg.RolloutPlan(pg.canary_steps([50, 100], 3), LENIENT, alias="production"),
            workspace=ws,
        )
    assert load.failed == []
    assert shadow.status == canary.status == pg.PROMOTED
    (step,) = shadow.steps
    agreement = next(r for r in step.analysis.results if r.check == "agreement")
    assert agreement.candidate == 1.0
    assert agreement.passed
    assert [s.step.percent for s in canary.steps] == [50, 100]
    assert all(s.analysis.passed for s in canary.steps)
    dep = deploy.get_deployment(NAME, workspace=ws)
    assert dep.current is not None
    assert dep.current.model_ref == v3
    assert dep.config.get("candidate") is None
    assert ws.store.models.get_version("sign", alias="production").ref == v3
    # Both answers to a mirrored request are logged under its request id, by variant.
    log_dir = prediction_log_dir(dep)
    assert log_dir is not None
    since = shadow.steps[0].analysis.since
    import datetime as dt

    table = read_window(log_dir, dt.datetime.fromisoformat(since), dt.datetime.now(dt.UTC))
    assert table is not None
    rows = list(zip(*(table.column(c).to_pylist() for c in ("request_id", "variant")),
                    strict=True))  # fmt: skip
    mirrored = {rid for rid, variant in rows if variant == "shadow"}
    primary = {rid for rid, variant in rows if variant == "primary"}
    assert len(mirrored) >= 40
    assert mirrored <= primary
    assert any(variant == "canary" for _, variant in rows)
    # Status and lineage show the steps.
    runner = CliRunner()
    out = runner.invoke(cli, ["deployments", "status", NAME])
    assert "rollout:" in out.output, out.output
    assert "step 2: canary 100 %" in out.output, out.output
    tree = runner.invoke(cli, ["lineage", v2])
    assert "shadow rollout" in tree.output, tree.output
    assert "step 1: shadow 100 %" in tree.output, tree.output


@pytest.mark.parametrize(
    ("model", "failing"),
    [(Flaky(), "error rate"), (Slow(), "p99 latency ms"), (Crashy(), "candidate health")],
    ids=["fails-5-percent", "adds-50-ms", "crashes"],
)
def test_a_bad_canary_is_aborted_at_the_first_step(
    served: tuple[Workspace, int, str], model: object, failing: str
) -> None:
    ws, port, v1 = served
    bad = register(ws, model)
    url = f"http://127.0.0.1:{port}"
    with Load(url, model="sign") as load:
        load.wait_ok(20)
        started = time.monotonic()
        with pytest.raises(RolloutAborted, match="step 1") as caught:
            pg.rollout(
                _spec(bad, port, "canary"),
                pg.RolloutPlan(pg.canary_steps([50, 100], 6), FAST, alias="production"),
                workspace=ws,
            )
        took = time.monotonic() - started
        before = load.ok
        deadline = time.monotonic() + 10
        while load.ok < before + 10 and time.monotonic() < deadline:
            time.sleep(0.05)
    result = caught.value.result
    assert isinstance(result, pg.RolloutResult)
    assert len(result.steps) == 1
    failed = [r.check for r in result.steps[0].analysis.results if r.passed is False]
    assert failing in failed, result.steps[0].analysis
    assert load.failed == []  # the serving version answered what the candidate could not
    assert load.versions <= {v1.split("@")[1], bad.split("@")[1]}
    dep = deploy.get_deployment(NAME, workspace=ws)
    assert dep.current is not None
    assert dep.current.model_ref == v1
    assert dep.config.get("candidate") is None
    assert took < 60
    actions = pg.rollouts(ws, NAME)
    assert actions[0]["status"] == pg.ABORTED
    assert failing in actions[0]["reason"]


def test_the_cli_runs_a_canary_and_exits_non_zero_on_an_abort(
    served: tuple[Workspace, int, str],
) -> None:
    ws, port, v1 = served
    good, flaky = register(ws, SignToo()), register(ws, Flaky())
    runner = CliRunner()
    common = ["--name", NAME, "--target", "local", "--port", str(port), "--strategy", "canary",
              "--steps", "50,100", "--interval", "3s", "--check", "min_requests=10",
              "--check", "latency_p99_slack_ms=150", "--check", "min_labels=10000"]  # fmt: skip
    refused = runner.invoke(cli, ["deploy", good, *common, "--check", "nope=1"])
    assert refused.exit_code != 0
    assert "unknown analysis threshold 'nope'" in refused.output
    with Load(f"http://127.0.0.1:{port}", model="sign") as load:
        load.wait_ok(20)
        passed = runner.invoke(cli, ["deploy", good, *common, "--alias", ""])
        aborted = runner.invoke(cli, ["deploy", flaky, *common])
    assert passed.exit_code == 0, passed.output
    assert "step 1: canary 50 %" in passed.output
    assert "step 2: canary 100 %" in passed.output
    assert f"{good} passed 2 step(s) and serves {NAME}" in passed.output
    assert aborted.exit_code == 1, aborted.output
    assert "aborted, the serving version keeps all the traffic" in aborted.output
    assert "error rate" in aborted.output
    assert load.failed == []
    dep = deploy.get_deployment(NAME, workspace=ws)
    assert dep.current is not None
    assert dep.current.model_ref == good
