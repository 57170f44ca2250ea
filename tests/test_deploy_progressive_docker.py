"""Progressive rollouts on the ``docker`` target with real containers: shadow through the
serving replicas' mirror, canary through HAProxy's weights; a candidate that fails 5 % of
requests, adds 50 ms or crashes is aborted at the first step while clients keep their
answers."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from _deploy_helpers import Load
from _variant_models import Crashy, Flaky, Sign, SignToo, Slow, register
from modelyard import deploy
from modelyard.deploy.probe import free_port
from modelyard.errors import RolloutAborted
from modelyard.images import DockerEngine
from modelyard.monitor import progressive as pg
from modelyard.monitor.analysis import Thresholds
from modelyard.packaging import build_model_image
from modelyard.workspace import Workspace

pytestmark = [pytest.mark.docker, pytest.mark.slow]
NAME = "pytest-sign"
FAST = Thresholds(min_requests=10, min_labels=10_000)
LENIENT = Thresholds(min_requests=10, min_labels=10_000, latency_p99_slack_ms=150)
KINDS = {"good": SignToo(), "flaky": Flaky(), "slow": Slow(), "crashy": Crashy()}


@pytest.fixture(scope="module")
def images(
    engine: DockerEngine, base_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Workspace, dict[str, str]]]:
    root = tmp_path_factory.mktemp("progressive-docker") / "ws"
    ws, _ = Workspace.init(root, environ={})
    refs = {"v1": register(ws, Sign())} | {k: register(ws, m) for k, m in KINDS.items()}
    for ref in refs.values():
        build_model_image(ref, workspace=ws, base_image=base_image, engine=engine)
    yield ws, refs
    ws.close()


@pytest.fixture
def served(
    images: tuple[Workspace, dict[str, str]],
) -> Iterator[tuple[Workspace, int, dict[str, str]]]:
    ws, refs = images
    port = free_port()
    deploy.deploy(deploy.DeploySpec(refs["v1"], NAME, target="docker", port=port), workspace=ws)
    yield ws, port, refs
    deploy.stop(NAME, workspace=ws)


def _spec(ref: str, port: int, strategy: str) -> deploy.DeploySpec:
    return deploy.DeploySpec(ref, NAME, target="docker", port=port, strategy=strategy)


@pytest.mark.timeout(1200)
def test_docker_shadow_then_canary_promote(
    served: tuple[Workspace, int, dict[str, str]], engine: DockerEngine
) -> None:
    ws, port, refs = served
    with Load(f"http://127.0.0.1:{port}", model="sign") as load:
        load.wait_ok(20)
        shadow = pg.rollout(
            _spec(refs["good"], port, "shadow"),
            pg.RolloutPlan((pg.shadow_step(1.0, 30, requests=30),), LENIENT),
            workspace=ws,
            on_step=lambda r: None,
        )
        assert shadow.status == pg.PROMOTED
        # the shadow's version now serves; canary the first one back in, sticky by a header
        canary = pg.rollout(
            _spec(refs["v1"], port, "canary"),
            pg.RolloutPlan(pg.canary_steps([50, 100], 4), LENIENT, sticky="x-user"),
            workspace=ws,
        )
    assert load.failed == []
    assert canary.status == pg.PROMOTED
    (step,) = shadow.steps
    by = {r.check: r for r in step.analysis.results}
    assert by["agreement"].candidate == 1.0
    assert all(s.analysis.passed for s in canary.steps)
    assert canary.steps[0].analysis.candidate_requests >= 10  # HAProxy's weights sent some
    dep = deploy.get_deployment(NAME, workspace=ws)
    assert dep.current is not None
    assert dep.current.model_ref == refs["v1"]
    leftover = engine.run(["ps", "-aq", "--filter", "label=io.modelyard.role=candidate",
                           "--filter", f"label=io.modelyard.deployment={NAME}"]).stdout  # fmt: skip
    assert leftover == b""


@pytest.mark.timeout(1200)
@pytest.mark.parametrize(
    ("kind", "failing"),
    [("flaky", "error rate"), ("slow", "p99 latency ms"), ("crashy", "candidate health")],
)
def test_docker_bad_canary_is_aborted_at_the_first_step(
    served: tuple[Workspace, int, dict[str, str]], kind: str, failing: str
) -> None:
    ws, port, refs = served
    with Load(f"http://127.0.0.1:{port}", model="sign") as load:
        load.wait_ok(20)
        with pytest.raises(RolloutAborted, match="step 1") as caught:
            pg.rollout(
                _spec(refs[kind], port, "canary"),
                pg.RolloutPlan(pg.canary_steps([50, 100], 8), FAST),
                workspace=ws,
            )
        before = load.ok
        deadline = time.monotonic() + 20
        while load.ok < before + 10 and time.monotonic() < deadline:
            time.sleep(0.05)
    result = caught.value.result
    assert isinstance(result, pg.RolloutResult)
    failed = [r.check for r in result.steps[0].analysis.results if r.passed is False]
    assert failing in failed, result.steps[0].analysis
    # HAProxy retries a refused request or a 5xx answer (L7 retries, on another server when
    # there is one), so clients see far fewer errors than the candidate made: within the
    # error budget the analysis allows (max_error_rate_increase, 1 %).
    budget = FAST.max_error_rate_increase * (load.ok + len(load.failed))
    assert len(load.failed) <= budget, (load.ok, load.failed[:3])
    dep = deploy.get_deployment(NAME, workspace=ws)
    assert dep.current is not None
    assert dep.current.model_ref == refs["v1"]
    assert deploy.status(NAME, workspace=ws).healthy
