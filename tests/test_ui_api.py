"""The dashboard's JSON (``/api/v1/ui``) over a workspace made the way the maintenance demo makes
one: a pipeline run, a registered model promoted to production, a deployment serving it and
monitor reports, one of which saw a drifted feature. ``build_world`` is shared with the browser
test."""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from modelyard.workspace import Workspace

pytest.importorskip("fastapi")
pytest.importorskip("sklearn")

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "maintenance"
DEPLOYMENT = "maintenance-prod"
DRIFTED = "vibration_mm_s"


@dataclass(frozen=True)
class World:
    pipeline_run: str
    train_dataset: str  # the dataset version the model was trained from, "sensors@1"
    model_ref: str
    deployment: str
    reports: tuple[int, ...]


def _drift_doc(drifted: bool, features: list[str]) -> dict[str, Any]:
    from modelyard.monitor.drift import DriftReport, FeatureDrift
    from modelyard.monitor.windows import WindowInfo

    rows = []
    for name in features:
        hit = drifted and name == DRIFTED
        rows.append(
            FeatureDrift(
                name=name,
                kind="numeric",
                test="ks",
                n_reference=500,
                n_current=200,
                statistic=0.61 if hit else 0.04,
                p_value=1e-12 if hit else 0.8,
                p_adjusted=1e-11 if hit else 0.9,
                drifted=hit,
                missing_share=0.0,
            )
        )
    now = datetime.now(UTC)
    return DriftReport(
        kind="data",
        reference="maintenance@1",
        window=WindowInfo(now - timedelta(minutes=5), now, 200, 200),
        features=tuple(rows),
        findings=(),
        n_drifted=int(drifted),
        drift_share=1 / len(features) if drifted else 0.0,
        drifted=drifted,
    ).to_dict()


def build_world(ws: Workspace, rows: int = 600) -> World:
    """Run the maintenance pipeline in-process, register its model as ``maintenance@1`` and
    promote it, record a deployment serving it and two monitor reports (the second drifted)."""
    from modelyard import models
    from modelyard.pipeline.run import make_runner, run_pipeline

    sys.path.insert(0, str(EXAMPLE))
    try:
        from generate import generate  # examples/maintenance/generate.py
    finally:
        sys.path.remove(str(EXAMPLE))
    shutil.copy(EXAMPLE / "pipeline.py", ws.root / "pipeline.py")
    incoming = ws.root / "data" / "incoming"
    incoming.mkdir(parents=True)
    generate(rows, seed=1).to_csv(incoming / "batch-001.csv", index=False)
    run = run_pipeline(
        ws.root / "pipeline.py",
        params={"n_estimators": 10, "min_roc_auc": 0.5},
        workspace=ws,
        runner=make_runner("in-process", ws),
    )
    assert run.status == "finished", run.error
    version = models.register(run.step("register").run_id or "", "maintenance", workspace=ws)
    models.promote(version.ref, "production", workspace=ws)

    deployments = ws.store.deployments
    deployments.create(DEPLOYMENT, "local", port=None, replicas=1, config={})
    revision = deployments.add_revision(
        DEPLOYMENT,
        model_name=version.name,
        model_version=version.version,
        image_ref=None,
        image_digest=None,
        replicas=1,
    )
    deployments.finish_revision(DEPLOYMENT, revision.revision, ok=True)
    deployments.add_event(DEPLOYMENT, "rollout", f"serving {version.ref}")
    ws.store.lineage.add("model_version", version.ref, "deployment", DEPLOYMENT, "deployed_as")

    profile = ws.store.datasets.get_version("sensors", 1).profile or {}
    features = [c["name"] for c in profile.get("columns", []) if c["name"] != "failure"][:6]
    features = sorted({*features, DRIFTED})
    reports = []
    for i, drifted in enumerate((False, True)):
        latest = {
            "requests": 200.0,
            "drift_share": 1 / len(features) if drifted else 0.0,
            "accuracy": 0.93 - 0.2 * i,
            "labels": 150.0,
            "up": 1.0,
            "error_rate": 0.01 * i,
            "latency_p50_ms": 3.0 + i,
            "latency_p99_ms": 20.0 + 5 * i,
        }
        report = ws.store.monitoring.add_report(
            DEPLOYMENT,
            model_name=version.name,
            model_version=version.version,
            window_end=datetime.now(UTC),
            metrics={"latest": latest, "windows": [latest]},
            details={
                "drift": [_drift_doc(drifted, features)],
                "quality": [None],
                "availability": {"endpoints": [{"requests": 1000.0 + 600 * i}]},
            },
        )
        ws.store.lineage.add(
            "deployment", DEPLOYMENT, "monitor_report", str(report.id), "monitored"
        )
        reports.append(report.id)
    _record_rollout(ws, version.ref)
    fired = {"policy": "retrain-on-drift", "status": "fired", "reasons": [f"{DRIFTED} drifted"]}
    ws.store.monitoring.set_fired(reports[-1], [fired])
    ws.store.monitoring.add_action(
        report_id=reports[-1],
        deployment=DEPLOYMENT,
        policy="retrain-on-drift",
        action="retrain",
        status="champion_kept",
        reason="the challenger did not beat the champion",
        finished=True,
    )
    return World(run.id, "sensors@1", version.ref, DEPLOYMENT, tuple(reports))


def _record_rollout(ws: Workspace, primary: str) -> None:
    """An aborted canary of maintenance@9 as the rollout controller records it."""
    from modelyard.monitor.analysis import Analysis, CheckResult
    from modelyard.monitor.progressive import ABORTED, ACTION, StepRecord, canary_steps

    results = (
        CheckResult("error rate", 0.05, 0.0, "<= primary + 0.01", False, "5.00% vs 0.00%"),
        CheckResult("p99 latency ms", 12.0, 10.0, "<= primary x 1.5 + 20", True, "12 vs 10"),
    )
    now = datetime.now(UTC).isoformat()
    step = StepRecord(1, canary_steps([5], 60)[0], Analysis("canary", now, now, 80, 1500, results))
    ws.store.monitoring.add_action(
        report_id=None, deployment=DEPLOYMENT, policy="deploy", action=ACTION, status=ABORTED,
        reason="step 1 failed: error rate", finished=True,
        detail={"candidate": "maintenance@9", "primary": primary, "strategy": "canary",
                "steps": [step.to_dict()]},
    )  # fmt: skip


@pytest.fixture
def world(workspace: Workspace) -> World:
    return build_world(workspace)


@pytest.fixture
def client(workspace: Workspace) -> Any:
    from _asgi import AppClient
    from modelyard.server.app import create_app

    _, secret = workspace.store.tokens.create("viewer", "read")
    with AppClient(create_app(workspace)) as c:
        c.headers = {"Authorization": f"Bearer {secret}"}
        yield c


def get(client: Any, path: str, **params: Any) -> Any:
    response = client.get(f"/api/v1/ui{path}", params=params, headers=client.headers)
    assert response.status_code == 200, response.text
    return response.json()


def test_every_page_of_the_lifecycle(world: World, client: Any) -> None:
    summary = get(client, "/summary")
    assert summary["models"] == 1
    assert summary["deployments"] == 1
    assert summary["runs"] >= 7

    runs = get(client, "/runs", limit=3)
    assert runs["total"] == summary["runs"]
    assert len(runs["items"]) == 3
    assert get(client, "/runs/pipelines")["items"] == ["maintenance"]
    steps = get(client, "/runs", q="train", pipeline="maintenance")["items"]
    assert [r["name"] for r in steps] == ["train"]

    detail = get(client, f"/runs/{world.pipeline_run}")
    assert {c["name"] for c in detail["children"]} >= {"collect", "train", "register"}
    register = next(c for c in detail["children"] if c["name"] == "register")
    assert get(client, f"/runs/{register['id']}")["models"] == [world.model_ref]

    dataset = get(client, "/datasets/sensors")
    assert [v["ref"] for v in dataset["versions"]] == ["sensors@1"]
    version = get(client, "/datasets/sensors/versions/1")
    assert DRIFTED in {c["name"] for c in version["profile"]["columns"]}
    assert get(client, "/datasets/sensors/diff", a=1, b=1)["identical"] is True

    model = get(client, "/models/maintenance")
    assert model["aliases"] == {"production": 1}
    assert [(h["alias"], h["to_version"]) for h in model["alias_history"]] == [("production", 1)]

    deps = get(client, "/deployments")
    assert deps["available"] is True
    (dep,) = deps["items"]
    assert (dep["name"], dep["model"], dep["status"]) == (DEPLOYMENT, world.model_ref, "running")
    # 600 more requests counted between the two reports: a rate, and the newest latencies.
    assert dep["health"]["p99_ms"] == 25.0
    assert dep["health"]["request_rate"] > 0
    detail = get(client, f"/deployments/{DEPLOYMENT}")
    assert [p["p50_ms"] for p in detail["health"]] == [3.0, 4.0]
    assert detail["events"][0]["message"] == f"serving {world.model_ref}"
    (rollout,) = detail["rollouts"]
    assert (rollout["strategy"], rollout["candidate"], rollout["status"]) == (
        "canary",
        "maintenance@9",
        "aborted",
    )
    (step,) = rollout["steps"]
    assert [c["check"] for c in step["analysis"]["results"]] == ["error rate", "p99 latency ms"]
    assert step["analysis"]["passed"] is False

    mon = get(client, "/monitoring", deployment=DEPLOYMENT)
    assert [r["id"] for r in mon["reports"]] == list(world.reports)
    first, second = mon["reports"]
    assert not any(f["drifted"] for f in first["drift"].values())
    assert [name for name, f in second["drift"].items() if f["drifted"]] == [DRIFTED]
    assert second["fired"][0]["policy"] == "retrain-on-drift"
    assert mon["actions"][0]["status"] == "champion_kept"
    check_lineage(world, client)


def check_lineage(world: World, client: Any) -> None:
    """The graph from the deployment reaches the training data, and back."""
    graph = get(client, "/lineage", type="deployment", id=DEPLOYMENT)
    nodes = {f"{n['type']}:{n['id']}": n for n in graph["nodes"]}
    assert f"model_version:{world.model_ref}" in nodes
    assert f"dataset_version:{world.train_dataset}" in nodes
    assert nodes[f"dataset_version:{world.train_dataset}"]["level"] < 0  # upstream
    assert {f"monitor_report:{r}" for r in world.reports} <= set(nodes)
    assert all(e["source"] in nodes and e["target"] in nodes for e in graph["edges"])
    assert {
        "source": f"model_version:{world.model_ref}",
        "target": f"deployment:{DEPLOYMENT}",
        "relation": "deployed_as",
    } in graph["edges"]

    back = get(client, "/lineage", type="dataset_version", id=world.train_dataset)
    assert f"deployment:{DEPLOYMENT}" in {f"{n['type']}:{n['id']}" for n in back["nodes"]}

    shallow = get(client, "/lineage", type="deployment", id=DEPLOYMENT, depth=1)
    assert shallow["truncated"] is True
    assert f"dataset_version:{world.train_dataset}" not in {
        f"{n['type']}:{n['id']}" for n in shallow["nodes"]
    }


def _seed_runs(ws: Workspace, n: int) -> list[str]:
    from modelyard.store.schema import utcnow

    ids = []
    for i in range(n):
        run_id = f"{i:032x}"
        ws.store.runs.create(run_id, name=f"trial-{i}", pipeline="p" if i % 2 else None)
        ws.store.runs.log_metrics(run_id, [("loss", 1.0 / (i + 1), 0, utcnow())])
        if i % 3 == 0:
            ws.store.runs.finish(run_id, "finished")
        ids.append(run_id)
    return ids


def test_runs_filter_sort_paginate_and_compare(workspace: Workspace, client: Any) -> None:
    ids = _seed_runs(workspace, 7)
    page1 = get(client, "/runs", limit=3, sort="name", order="asc")
    page2 = get(client, "/runs", limit=3, offset=3, sort="name", order="asc")
    assert [r["name"] for r in page1["items"] + page2["items"]] == [f"trial-{i}" for i in range(6)]
    assert page1["total"] == 7
    finished = get(client, "/runs", status="finished")
    assert finished["total"] == 3
    assert {r["status"] for r in finished["items"]} == {"finished"}
    assert get(client, "/runs", pipeline="p")["total"] == 3
    assert get(client, "/runs", q="trial-6")["items"][0]["id"] == ids[6]
    assert get(client, "/runs", q="100%")["total"] == 0  # LIKE wildcards are literal
    by_loss = get(client, "/runs", sort="metric", metric="loss", order="asc", limit=2)
    assert [r["name"] for r in by_loss["items"]] == ["trial-6", "trial-5"]

    workspace.store.runs.log_metrics(
        ids[0], [("loss", 0.5, step, datetime.now(UTC)) for step in range(1, 4)]
    )
    cmp = get(client, "/compare", runs=[ids[0], ids[1]])
    assert cmp["keys"] == ["loss"]
    assert cmp["series"]["loss"][ids[0]] == [[0, 1.0], [1, 0.5], [2, 0.5], [3, 0.5]]
    assert [r["id"] for r in cmp["runs"]] == [ids[0], ids[1]]


def test_bad_requests_are_4xx_and_data_needs_a_token(
    sqlite_workspace: Workspace,
) -> None:
    from _asgi import AppClient
    from modelyard.server.app import create_app

    ws = sqlite_workspace
    _, secret = ws.store.tokens.create("viewer", "read")
    _, predict = ws.store.tokens.create("scorer", "predict")
    auth = {"Authorization": f"Bearer {secret}"}
    with AppClient(create_app(ws)) as c:
        assert c.get("/api/v1/ui/runs").status_code == 401
        wrong_role = {"Authorization": f"Bearer {predict}"}
        assert c.get("/api/v1/ui/runs", headers=wrong_role).status_code == 403
        assert c.get("/api/v1/ui/runs", params={"sort": "drop"}, headers=auth).status_code == 422
        assert c.get("/api/v1/ui/runs", params={"limit": 0}, headers=auth).status_code == 422
        assert c.get("/api/v1/ui/runs", params={"sort": "metric"}, headers=auth).status_code == 422
        assert c.get("/api/v1/ui/runs/ffff0000", headers=auth).status_code == 404
        assert c.get("/api/v1/ui/models/nope", headers=auth).status_code == 404
        assert c.get("/api/v1/ui/deployments/nope", headers=auth).status_code == 404
        missing = c.get("/api/v1/ui/lineage", params={"type": "run", "id": "ab" * 16}, headers=auth)
        assert missing.status_code == 404
        empty = c.get("/api/v1/ui/monitoring", headers=auth).json()
        assert (empty["available"], empty["reports"]) == (True, [])
        # The bundle is public (it carries no data) and is what / serves.
        index = c.get("/")
        assert index.status_code == 200
        assert "/ui/assets/" in index.text
        asset = index.text.split('src="')[1].split('"')[0]
        assert c.get(asset).status_code == 200


def test_model_page_compares_versions(world: World, workspace: Workspace, client: Any) -> None:
    """Each version's column: the scores and data found upstream of its run (a pipeline's
    register step has neither itself), its gate verdicts today, and who promoted it."""
    from modelyard import models

    models.set_gate("maintenance", ["roc_auc >= 2"], aliases=["production"], workspace=workspace)
    model = get(client, "/models/maintenance")
    assert [v["ref"] for v in model["versions"]] == [world.model_ref]
    (side,) = model["compare"]
    steps = workspace.store.runs.search(parent_id=world.pipeline_run, limit=50)
    evaluate = next(r for r in steps if r.name == "evaluate")
    assert side["metrics"]["roc_auc"] == evaluate.latest_metrics["roc_auc"]
    assert side["datasets"] == {"sensors": world.train_dataset}
    gate = side["gates"]["production"]
    assert gate["passed"] is False
    assert [c["check"] for c in gate["checks"]] == ["roc_auc >= 2"]
    (move,) = workspace.store.models.alias_history("maintenance")
    assert side["promotions"] == [
        {"alias": "production", "by": move.actor, "at": move.moved_at.isoformat(), "forced": False}
    ]
