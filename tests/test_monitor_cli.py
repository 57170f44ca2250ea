"""``modelyard monitor``: exit codes of check, a clean stop of watch on SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from modelyard import models
from modelyard.cli.main import cli
from modelyard.workspace import Workspace

ALERT_ON_OUTAGE = """
[monitor]
interval = "1s"

[[monitor.policies]]
name = "page"
action = "alert"
when = ["down"]
"""


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def deployment(ws: Workspace, port: int | None) -> None:
    ws.store.deployments.create("svc", "local", port=port, replicas=1, config={})
    rev = ws.store.deployments.add_revision(
        "svc", model_name="toy", model_version=1, image_ref=None, image_digest=None, replicas=1
    )
    ws.store.deployments.finish_revision("svc", rev.revision, ok=True)


def configure(ws: Workspace, text: str) -> None:
    (ws.root / "modelyard.toml").write_text(text)


def test_check_exits_0_when_nothing_fired(workspace: Workspace) -> None:
    configure(workspace, ALERT_ON_OUTAGE)
    deployment(workspace, port=None)  # nothing to probe, nothing logged
    result = CliRunner().invoke(cli, ["monitor", "check", "svc"])
    assert result.exit_code == 0, result.output
    assert "No traffic logged for the served version yet." in result.output
    assert "monitor report 1 for svc: no policy fired" in result.output


def test_check_exits_3_when_a_policy_fired(workspace: Workspace) -> None:
    configure(workspace, ALERT_ON_OUTAGE)
    deployment(workspace, port=closed_port())
    result = CliRunner().invoke(cli, ["monitor", "check", "svc"])
    assert result.exit_code == 3, result.output
    assert "monitor report 1 for svc: 1 policy(ies) fired" in result.output
    assert "down (now 0)" in result.output
    (action,) = workspace.store.monitoring.actions("svc")
    assert (action.policy, action.action, action.status) == ("page", "alert", "logged")


def test_check_errors_exit_1_naming_the_problem(workspace: Workspace) -> None:
    configure(workspace, ALERT_ON_OUTAGE)
    result = CliRunner().invoke(cli, ["monitor", "check", "nope"])
    assert result.exit_code == 1
    assert "nope" in result.output
    configure(workspace, ALERT_ON_OUTAGE.replace('when = ["down"]', 'when = ["latency > 5"]'))
    deployment(workspace, port=None)
    result = CliRunner().invoke(cli, ["monitor", "check", "svc"])
    assert result.exit_code == 1
    # (the CLI's error line renders "[[monitor.policies]]" as rich markup: reported upstream)
    assert "'page' when[0] = 'latency > 5': unknown metric 'latency'" in result.output


@pytest.mark.slow
def test_watch_stops_cleanly_on_sigterm_mid_retrain(workspace: Workspace, tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    from _monitor_toy import deploy_champion

    marker = tmp_path / "training"
    deploy_champion(workspace, flip=False, port=closed_port())
    configure(
        workspace,
        f"""
[monitor]
interval = "1s"

[[monitor.policies]]
name = "retrain-on-outage"
action = "retrain"
when = "down"
runner = "in-process"
params = {{ hold = "{marker}" }}
""",
    )
    modelyard = Path(sys.executable).parent / "modelyard"
    proc = subprocess.Popen(
        [str(modelyard), "monitor", "watch"],
        cwd=workspace.root,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 90
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the retrain never started"
            time.sleep(0.05)
        (lease,) = workspace.store.monitoring.leases()
        assert lease.name == "retrain:toy"
        proc.send_signal(signal.SIGTERM)
        marker.with_suffix(".go").write_text("")
        out, err = proc.communicate(timeout=90)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert "Stopped after 1 pass(es)" in out
    assert workspace.store.monitoring.leases() == []
    (action,) = workspace.store.monitoring.actions("toy-prod")
    assert action.status == "failed"
    assert action.reason == "stopped before evaluation; nothing was changed"
    assert [v.version for v in models.list_versions("toy", workspace=workspace)] == [1]


def test_report_writes_a_self_contained_html_file(workspace: Workspace) -> None:
    configure(workspace, ALERT_ON_OUTAGE)
    deployment(workspace, port=closed_port())
    runner = CliRunner()
    missing = runner.invoke(cli, ["monitor", "report", "svc", "-o", "r.html"])
    assert missing.exit_code == 1
    assert "no monitor reports for 'svc' yet" in missing.output
    assert runner.invoke(cli, ["monitor", "check", "svc"]).exit_code == 3
    result = runner.invoke(cli, ["monitor", "report", "svc", "-o", "r.html"])
    assert result.exit_code == 0, result.output
    assert result.output == "Wrote r.html\n"
    html = (workspace.root / "r.html").read_text()
    assert "modelyard monitor: svc" in html
    assert "page" in html  # the alert decision is listed
    assert "<script src=" not in html
