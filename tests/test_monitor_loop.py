"""The closed loop with the statistics faked: policies fire on given windows, retrains run a
real (tiny) pipeline, and the champion is replaced only when the challenger wins."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelyard import models
from modelyard.lineage import build_lineage
from modelyard.monitor.check import Observation, check_deployment
from modelyard.monitor.policy import load_config
from modelyard.monitor.retrain import RetrainPlan
from modelyard.workspace import Workspace

pytest.importorskip("sklearn")
pytest.importorskip("skops")
DECAY = {
    "policies": [
        {
            "name": "retrain-on-decay",
            "action": "retrain",
            "when": ["accuracy < 0.85 with 100 labels", "drift_share > 0.3 for 2 windows"],
            "cooldown": "1h",
            "margin": 0.02,
        }
    ]
}


def decayed(ws: Workspace, dep: Any, config: Any) -> Observation:
    return Observation(
        windows=({"accuracy": 0.95, "labels": 300.0}, {"accuracy": 0.6, "labels": 300.0}),
        details={"note": "faked"},
    )


def healthy(ws: Workspace, dep: Any, config: Any) -> Observation:
    return Observation(windows=({"accuracy": 0.95, "labels": 300.0, "drift_share": 0.5},))


def recent(ws: Workspace, dep: Any, champion: Any) -> tuple[Any, Any]:
    from _monitor_toy import toy_frame

    frame = toy_frame(n=400, seed=7)
    return frame[["a", "b"]], frame["y"].to_numpy()


class Rollouts:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[str] = []

    def __call__(self, ws: Workspace, dep: Any, version: Any) -> None:
        self.calls.append(version.ref)
        if self.fail:
            raise RuntimeError("new replicas never became ready")
        revision = ws.store.deployments.add_revision(
            dep.name,
            model_name=version.name,
            model_version=version.version,
            image_ref=None,
            image_digest=None,
            replicas=1,
        )
        ws.store.deployments.finish_revision(dep.name, revision.revision, ok=True)


def champion(ws: Workspace, *, flip: bool) -> Path:
    from _monitor_toy import deploy_champion

    return deploy_champion(ws, flip=flip)


def plan(rollout: Rollouts, **params: Any) -> RetrainPlan:
    return RetrainPlan(params=params, evaluation=recent, rollout=rollout, runner="in-process")


def production(ws: Workspace) -> str:
    return models.resolve("toy@production", ws).ref


def test_challenger_that_wins_is_registered_rolled_out_and_promoted(workspace: Workspace) -> None:
    champion(workspace, flip=True)  # a champion trained on inverted labels
    rollout = Rollouts()
    result = check_deployment(
        workspace,
        "toy-prod",
        config=load_config(DECAY),
        gather=decayed,
        retrain_plan=plan(rollout, flip=False),
    )
    assert result.fired
    (firing,) = result.firings
    assert firing.reasons == ("accuracy < 0.85 with 100 labels (now 0.6), 300 labels >= 100",)
    assert firing.outcome["status"] == "promoted"
    assert firing.outcome["scores"]["challenger"] > 0.9 > firing.outcome["scores"]["champion"]
    assert rollout.calls == ["toy@2"]
    assert production(workspace) == "toy@2"
    assert workspace.store.deployments.get("toy-prod").current.model_ref == "toy@2"  # type: ignore[union-attr]
    (action,) = workspace.store.monitoring.actions("toy-prod")
    assert (action.action, action.status, action.report_id) == (
        "retrain",
        "promoted",
        result.report.id,
    )
    assert "beat toy@1" in (action.reason or "")
    assert workspace.store.monitoring.leases() == []
    # the lineage of v2 reaches the monitor report that started it
    tree = build_lineage(workspace, "toy@2", direction="up", depth=6)
    reached = {(n.node_type, n.node_id) for n in tree.walk()}
    assert ("monitor_report", str(result.report.id)) in reached
    assert ("run", firing.outcome["pipeline_run"]) in reached
    down = build_lineage(workspace, f"report:{result.report.id}", direction="down", depth=3)
    assert ("model_version", "toy@2") in {(n.node_type, n.node_id) for n in down.walk()}
    assert down.label.startswith(f"monitor report {result.report.id} of toy-prod at ")
    # the cooldown holds the next firing back
    again = check_deployment(
        workspace, "toy-prod", config=load_config(DECAY), gather=decayed, retrain_plan=plan(rollout)
    )
    assert [f.status for f in again.firings] == ["cooldown"]
    assert rollout.calls == ["toy@2"]


def test_champion_is_kept_when_the_challenger_loses(workspace: Workspace) -> None:
    champion(workspace, flip=False)
    rollout = Rollouts()
    result = check_deployment(
        workspace,
        "toy-prod",
        config=load_config(DECAY),
        gather=decayed,
        retrain_plan=plan(rollout, flip=True),
    )
    outcome = result.firings[0].outcome
    assert outcome["status"] == "champion_kept"
    assert "does not beat champion" in outcome["reason"]
    assert "by the margin 0.02 on 400 recent labelled rows" in outcome["reason"]
    assert rollout.calls == []
    assert production(workspace) == "toy@1"
    assert [v.version for v in models.list_versions("toy", workspace=workspace)] == [1]
    assert workspace.store.monitoring.actions("toy-prod")[0].status == "champion_kept"


@pytest.mark.parametrize("where", ["pipeline", "rollout"])
def test_a_failure_mid_retrain_leaves_the_champion_serving(
    workspace: Workspace, where: str
) -> None:
    champion(workspace, flip=True)
    rollout = Rollouts(fail=where == "rollout")
    result = check_deployment(
        workspace,
        "toy-prod",
        config=load_config(DECAY),
        gather=decayed,
        retrain_plan=plan(rollout, flip=False, fail=where == "pipeline"),
    )
    outcome = result.firings[0].outcome
    assert outcome["status"] == "failed"
    assert outcome["reason"].endswith("the champion serves on")
    assert production(workspace) == "toy@1"
    assert workspace.store.deployments.get("toy-prod").current.model_ref == "toy@1"  # type: ignore[union-attr]
    assert workspace.store.monitoring.leases() == []
    assert workspace.store.monitoring.actions("toy-prod")[0].status == "failed"


def test_nothing_fires_on_a_healthy_window(workspace: Workspace) -> None:
    workspace.store.deployments.create("toy-prod", "local", port=None, replicas=1, config={})
    result = check_deployment(
        workspace, "toy-prod", config=load_config(DECAY), gather=healthy
    )  # drift 0.5 but only one window: "for 2 windows" needs two
    assert not result.fired
    assert result.report.metrics["latest"]["drift_share"] == 0.5
    assert workspace.store.monitoring.actions("toy-prod") == []


def test_two_monitors_retrain_once(workspace: Workspace) -> None:
    champion(workspace, flip=True)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []
    rollout = Rollouts()

    def monitor() -> None:
        ws = Workspace.at(workspace.root)
        try:
            ws.store  # noqa: B018 - connect before the race
            barrier.wait()
            result = check_deployment(
                ws,
                "toy-prod",
                config=load_config(DECAY),
                gather=decayed,
                retrain_plan=plan(rollout, flip=False),
            )
            outcomes.extend(f.outcome.get("status") or f.status for f in result.firings)
        finally:
            ws.close()

    threads = [threading.Thread(target=monitor) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) in (["busy", "promoted"], ["cooldown", "promoted"])
    assert rollout.calls == ["toy@2"]
    assert [v.version for v in models.list_versions("toy", workspace=workspace)] == [1, 2]
    assert np.isclose(len(workspace.store.monitoring.leases()), 0)


def test_evaluation_data_is_the_newest_labelled_traffic(sqlite_workspace: Workspace) -> None:
    """Unlabelled requests (however recent) are skipped; a multi-row request needs a label per
    row; only the newest ``requests`` labelled requests are kept."""
    from types import SimpleNamespace

    from modelyard.monitor.retrain import recent_labelled
    from modelyard.serving.predlog import FEEDBACK, PREDICTIONS, SegmentLog

    folder = sqlite_workspace.state_dir / "predictions" / "toy"
    logs = {
        kind: SegmentLog(
            folder,
            kind,
            segment_bytes=1 << 20,
            segment_seconds=60,
        )
        for kind in (PREDICTIONS, FEEDBACK)
    }
    for log in logs.values():
        log.start()
    for i in range(6):
        inputs = {"a": [float(i)], "b": [0.0]}
        logs[PREDICTIONS].put((f"r{i}", i, "toy", "1", "/invocations", inputs, [1], 0.001, 1))
        if i < 4:  # r4 and r5 are the newest, and unlabelled
            logs[FEEDBACK].put((f"r{i}", i, "toy", "1", i % 2))
    two_rows = {"a": [10.0, 11.0], "b": [0.0, 0.0]}
    logs[PREDICTIONS].put(("r6", 6, "toy", "1", "/invocations", two_rows, [1, 0], 0.001, 2))
    logs[FEEDBACK].put(("r6", 6, "toy", "1", [1, 0]))
    for log in logs.values():
        log.close()
    signature = {"inputs": [{"name": "a"}, {"name": "b"}]}
    champion = SimpleNamespace(name="toy", signature=signature)
    dep = SimpleNamespace(name="toy-prod", target="local", config={"log_dir": str(folder)})
    data = recent_labelled(sqlite_workspace, dep, champion, requests=3)  # type: ignore[arg-type]
    assert data is not None
    frame, labels = data
    assert frame["a"].tolist() == [2.0, 3.0, 10.0, 11.0]
    assert list(frame.columns) == ["a", "b"]
    assert labels.tolist() == [0, 1, 1, 0]


def test_watch_checks_every_served_deployment_and_survives_a_broken_one(
    workspace: Workspace,
) -> None:
    from modelyard.monitor.watch import watch

    repo = workspace.store.deployments
    for name in ("a", "b"):
        repo.create(name, "local", port=None, replicas=1, config={})
        rev = repo.add_revision(
            name, model_name="toy", model_version=1, image_ref=None, image_digest=None, replicas=1
        )
        repo.finish_revision(name, rev.revision, ok=True)

    def gather(ws: Workspace, dep: Any, config: Any) -> Observation:
        if dep.name == "a":
            raise RuntimeError("log folder unreadable")
        return healthy(ws, dep, config)

    seen: list[str] = []
    errors: list[tuple[str, str]] = []
    passes = watch(
        workspace,
        interval=0,
        config=load_config(DECAY),
        gather=gather,
        on_result=lambda r: seen.append(r.deployment),
        on_error=lambda name, exc: errors.append((name, exc.message)),
        max_passes=2,
    )
    assert passes == 2
    assert seen == ["b", "b"]
    assert errors == [("a", "RuntimeError: log folder unreadable")] * 2
