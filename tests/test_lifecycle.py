"""The whole loop, as ``make demo`` runs it: train, deploy, drift, retrain, roll out, explain."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from modelyard import models
from modelyard.lineage import build_lineage
from modelyard.workspace import Workspace

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "maintenance"

pytest.importorskip("sklearn")
pytest.importorskip("gunicorn")


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_the_demo_closes_the_loop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("MODELYARD_STORE_URL", "MODELYARD_ARTIFACT_ROOT", "MODELYARD_WORKSPACE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv("MODELYARD_SERVE_LOG_DIR", raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(EXAMPLE))
    for module in ("demo", "generate", "pipeline"):
        monkeypatch.delitem(sys.modules, module, raising=False)
    from demo import run_demo

    summary = run_demo(tmp_path / "demo-workspace")

    assert summary["outcome"]["status"] == "promoted", summary["outcome"]
    assert summary["production"] == "maintenance@2"
    assert summary["sent"] > 0
    assert summary["failed"] == 0
    assert summary["ok"]
    # The challenger earned the traffic on live requests: a shadow, then canary steps.
    (rollout,) = summary["rollouts"]
    assert rollout["status"] == "promoted", rollout
    assert [(s["mode"], s["percent"]) for s in rollout["steps"]] == [
        ("shadow", 100.0),
        ("canary", 50.0),
        ("canary", 100.0),
    ]
    assert all(s["analysis"]["passed"] for s in rollout["steps"])
    scored = summary["scored"]  # the nightly batch, scored by v1: drifted like the traffic
    assert scored.output.ref == "maintenance-scores@1"
    assert scored.drift.report is not None
    assert scored.drift.report.drifted
    assert {"process_temp_k", "torque_nm"} <= set(scored.drift.report.drifted_features)
    with Workspace.at(tmp_path / "demo-workspace", environ={}) as ws:
        assert models.resolve("maintenance@production", ws).version == 2
        moves = models.alias_history("maintenance", "production", workspace=ws)
        assert [(m.from_version, m.to_version) for m in moves][-1] == (1, 2)
        tree = build_lineage(ws, "maintenance@2", direction="up", depth=4)
        reached = {(n.node_type, n.node_id) for n in tree.walk()}
        assert ("monitor_report", str(summary["report_id"])) in reached
        (action,) = ws.store.monitoring.actions("maintenance", action="retrain")
        assert action.status == "promoted"
        assert action.report_id == summary["report_id"]
        # the retrain's pipeline run ended with its predict step over the newest batch
        tree = build_lineage(ws, "maintenance-scores@1", direction="up", depth=2)
        assert ("model_version", "maintenance@1") in {(n.node_type, n.node_id) for n in tree.walk()}

    # The commands the demo prints at the end work as printed (on a machine with Docker too).
    from click.testing import CliRunner

    from modelyard import deploy
    from modelyard.cli.main import cli

    runner = CliRunner()
    try:
        for hint in summary["hints"]:
            result = runner.invoke(cli, ["-C", str(tmp_path / "demo-workspace"), *hint])
            assert result.exit_code == 0, (hint, result.output)
    finally:
        with Workspace.at(tmp_path / "demo-workspace", environ={}) as ws:
            if ws.store.deployments.get("maintenance").status == "running":
                deploy.stop("maintenance", workspace=ws)
