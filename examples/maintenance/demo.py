"""``make demo``: the whole lifecycle on embedded defaults, in a fresh ``./demo-workspace``.

    train v1 (pipeline) → register → promote → deploy (local, no Docker) → traffic + feedback
    → a drifted batch (recalibrated sensors) → batch scoring of it: the scored batch's drift
    → monitor check: drift and quality decay
    → retrain on the new batch → v2 beats v1 on the recent labelled traffic
    → v2 shadows v1 on live drifted traffic (answers compared, labels joined), then a canary
      (25 % then 100 %) analysed at each step, then production — while a client keeps
      sending requests and feedback (failed requests counted)
    → the lineage of v2, back to the monitor report that started it

    python examples/maintenance/demo.py [--dir PATH] [--docker]

``--docker`` deploys to Docker (replicas behind a proxy) when an engine answers.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MODEL = "maintenance"
DEPLOYMENT = "maintenance"
WINDOW = 300  # requests per monitor window

CONFIG = f"""\
# Written by the modelyard demo.
[monitor]
interval = "1m"
window = {WINDOW}

[[monitor.policies]]
name = "retrain-on-decay"
action = "retrain"
when = ["drift_share > 0.2 for 2 windows", "accuracy < 0.85 with 200 labels"]
cooldown = "1h"
metric = "accuracy"
margin = 0.02
# The batch a retrain learns from is drifted by definition: widen the range check.
params = {{ tolerance = 10.0 }}
runner = "in-process"
# The winner earns the traffic on live requests: a shadow, then a canary (short for the demo).
rollout = "shadow,canary"
shadow_for = "5s"
canary_steps = [50, 100]
canary_interval = "3s"

[deploy.analysis]
min_requests = 10
min_labels = 30            # quality on joined feedback once both variants have 30 labels
max_quality_drop = 0.0     # the challenger must be at least as accurate on live traffic
min_agreement = 0.6        # it was retrained on drifted data: it may disagree, not wildly
max_prediction_distance = 0.4
latency_p99_slack_ms = 100 # a demo machine's scheduling noise, not the model

[[monitor.policies]]
name = "page-on-outage"
action = "alert"
when = ["down", "latency_p99_ms > 250"]
"""


def recalibrated(rows: int, seed: int) -> Any:
    """A batch after the maintenance crew swapped sensors: process temperature reads +3 K and
    the new torque sensor reports 1.5x. Failures still follow the physics, so a model trained
    on the old readings misjudges power and strain."""
    from generate import generate

    frame = generate(rows, seed=seed)
    frame["process_temp_k"] = (frame["process_temp_k"] + 3.0).round(2)
    frame["torque_nm"] = (frame["torque_nm"] * 1.5).round(2)
    return frame


class Client:
    """Sends prediction requests (one row each) over one keep-alive connection."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)

    def post(self, path: str, body: Any) -> tuple[int, dict[str, str], bytes]:
        payload = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
        for attempt in (1, 2):
            try:
                self.conn.request("POST", path, body=payload, headers=headers)
                response = self.conn.getresponse()
                data = response.read()
                return response.status, dict(response.getheaders()), data
            except (OSError, http.client.HTTPException):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def predict(self, row: dict[str, Any]) -> tuple[int, str | None]:
        columns = list(row)
        body = {"dataframe_split": {"columns": columns, "data": [[row[c] for c in columns]]}}
        status, headers, _ = self.post("/invocations", body)
        lowered = {k.lower(): v for k, v in headers.items()}
        return status, lowered.get("x-request-id")

    def close(self) -> None:
        self.conn.close()


def send_traffic(port: int, frame: Any, *, feedback: bool = True) -> int:
    """One request per row, then the true labels as feedback; returns the requests answered."""
    from pipeline import TARGET, features

    table = features(frame)
    labels = table.pop(TARGET)
    client = Client(port)
    answered, items = 0, []
    try:
        for row, label in zip(table.to_dict(orient="records"), labels, strict=True):
            status, request_id = client.predict(row)
            if status == 200:
                answered += 1
                if feedback and request_id:
                    items.append({"request_id": request_id, "label": int(label)})
        if items:
            client.post("/v1/feedback", {"feedback": items})
    finally:
        client.close()
    return answered


class Background:
    """A client thread sending requests (cycling through ``rows``) until stopped, counting the
    ones that failed, and posting the true ``labels`` as feedback every 20 answers."""

    def __init__(self, port: int, rows: list[dict[str, Any]], labels: list[int]) -> None:
        self.port, self.rows, self.labels = port, rows, labels
        self.sent = self.failed = 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        client = Client(self.port)
        items: list[dict[str, Any]] = []
        while not self.stop.is_set():
            i = self.sent % len(self.rows)
            try:
                status, request_id = client.predict(self.rows[i])
                self.failed += status != 200
                if status == 200 and request_id:
                    items.append({"request_id": request_id, "label": self.labels[i]})
                if len(items) >= 20:
                    client.post("/v1/feedback", {"feedback": items})
                    items = []
            except (OSError, http.client.HTTPException):
                self.failed += 1
            self.sent += 1
        client.close()

    def __enter__(self) -> Background:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()


def wait_for_logs(ws: Any, expected: int, timeout: float = 30.0) -> None:
    """The server writes its prediction log off the request path; wait until it caught up."""
    from modelyard.monitor.windows import iter_batches, prediction_log_dir

    log_dir = prediction_log_dir(ws.store.deployments.get(DEPLOYMENT))
    assert log_dir is not None, "local and docker deployments record their log folder"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (log_dir / "predictions").is_dir():
            logged = sum(b.num_rows for b in iter_batches(log_dir, "predictions"))
            if logged >= expected:
                return
        time.sleep(0.2)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", type=Path, default=Path("demo-workspace"))
    parser.add_argument("--docker", action="store_true", help="deploy to Docker if available")
    args = parser.parse_args()
    return 0 if run_demo(args.dir, docker=args.docker)["ok"] else 1


def run_demo(root: Path, *, docker: bool = False) -> dict[str, Any]:
    """Run the story in a fresh workspace at ``root``; returns what the lifecycle test checks."""
    from generate import generate
    from rich.console import Console

    from modelyard import deploy, models
    from modelyard.deploy.probe import free_port
    from modelyard.errors import ModelyardError
    from modelyard.monitor.check import check_deployment
    from modelyard.pipeline.run import make_runner, run_pipeline
    from modelyard.workspace import Workspace

    out = Console(highlight=False)
    started = time.monotonic()
    step_no = 0

    def stage(text: str) -> None:
        nonlocal step_no
        step_no += 1
        out.rule(f"[bold]{step_no}. {text}[/]  ({time.monotonic() - started:.0f} s)", align="left")

    root = root.resolve()
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    shutil.copy(HERE / "pipeline.py", root / "pipeline.py")
    incoming = root / "data" / "incoming"
    incoming.mkdir(parents=True)
    os.environ.pop("MODELYARD_STORE_URL", None)
    os.environ.pop("MODELYARD_ARTIFACT_ROOT", None)
    ws, _ = Workspace.init(root, environ={})
    with (root / "modelyard.toml").open("a") as f:
        f.write("\n" + CONFIG)
    ws = Workspace.at(root, environ={})
    os.chdir(root)
    target = "local"
    if docker:
        target = _docker_target(out)
    if target == "docker":
        # No image can be pulled on an air-gapped machine: use modelyard's own Debian-made base
        # (built once, then reused) for every model image of this workspace, retrains included.
        from modelyard.images import DEFAULT_BASE_TAG, build_base_image

        out.print(f"base image {DEFAULT_BASE_TAG} (made from Debian packages if missing)")
        build_base_image(DEFAULT_BASE_TAG)
        with (root / "modelyard.toml").open("a") as f:
            f.write(f'\n[images]\nbase_image = "{DEFAULT_BASE_TAG}"\n')
        ws = Workspace.at(root, environ={})

    stage("Train v1 on the first batch of sensor readings (pipeline)")
    generate(5000, seed=1).to_csv(incoming / "batch-001.csv", index=False)
    run = run_pipeline(
        root / "pipeline.py",
        params={"n_estimators": 60},
        workspace=ws,
        runner=make_runner("in-process", ws),  # one process: the demo is about the loop
        on_event=_events(out),
    )
    if run.status != "finished":
        out.print(f"[red]pipeline failed: {run.error}")
        return {"ok": False, "error": run.error}
    v1 = models.register(run.step("register").run_id or "", MODEL, workspace=ws)
    models.promote(v1.ref, "production", reason="first model", workspace=ws)
    out.print(f"registered {v1.ref}, promoted to production")

    stage(f"Deploy {MODEL}@production ({target} target)")
    if target == "docker":
        from modelyard.packaging import build_model_image

        build_model_image(v1.ref, workspace=ws)
    port = free_port()
    dep = deploy.deploy(
        deploy.DeploySpec(ref=f"{MODEL}@production", name=DEPLOYMENT, target=target, port=port),
        workspace=ws,
    )
    out.print(f"serving {dep.current.model_ref if dep.current else '?'} on http://127.0.0.1:{port}")

    stage("Normal traffic with feedback, then a monitor check")
    sent = send_traffic(port, generate(WINDOW, seed=5))
    wait_for_logs(ws, sent)
    result = check_deployment(ws, DEPLOYMENT)
    _print_check(out, result)

    stage("Sensors recalibrated: a drifted batch arrives, drifted traffic with feedback")
    recalibrated(5000, seed=2).to_csv(incoming / "batch-002.csv", index=False)
    out.print("new batch data/incoming/batch-002.csv (process temperature +3 K, torque x1.5)")
    sent += send_traffic(port, recalibrated(2 * WINDOW, seed=3))
    wait_for_logs(ws, sent)

    stage("Nightly batch scoring: production scores the new batch (modelyard predict)")
    scored = score_newest_batch(ws, incoming / "batch-002.csv")
    from modelyard.cli.batch import print_result

    print_result(scored)

    stage("monitor check: drift and quality decay → retrain → challenger vs champion → rollout")
    from pipeline import TARGET, features

    live = features(recalibrated(400, seed=9))
    live_labels = [int(v) for v in live.pop(TARGET)]
    with Background(port, live.to_dict(orient="records"), live_labels) as client:
        result = check_deployment(ws, DEPLOYMENT)
    _print_check(out, result)
    _print_rollout(out, ws)
    retrain = next((f for f in result.firings if f.action == "retrain"), None)
    outcome = retrain.outcome if retrain else {}
    out.print(f"requests sent during the check and rollout: {client.sent}, failed: {client.failed}")
    production = models.resolve(f"{MODEL}@production", ws)
    out.print(f"{MODEL}@production is now {production.ref}")

    stage(f"Lineage of {production.ref}: why does this model exist?")
    modelyard = str(Path(sys.executable).parent / "modelyard")
    subprocess.call([modelyard, "lineage", production.ref, "--up", "--depth", "4"], cwd=root)

    stage("Report and where to look next")
    report_path = root / "monitor-report.html"
    try:
        from modelyard.monitor.history import write_deployment_report

        write_deployment_report(ws, DEPLOYMENT, report_path)
        out.print(f"HTML report: {report_path}")
    except ModelyardError as exc:
        out.print(f"(no HTML report: {exc.message})")
    deploy.stop(DEPLOYMENT, workspace=ws)
    ws.close()
    rel = os.path.relpath(root, Path(os.environ.get("PWD", root)))
    # Each hint runs as printed (the lifecycle test runs them): the deploy names the target
    # and port the demo used, since the CLI's default target is Docker where an engine answers.
    hints = [
        ["lineage", f"dataset:{scored.output.ref}", "--up"],
        ["models", "list"],
        ["lineage", f"model:{production.ref}"],
        ["monitor", "report", DEPLOYMENT, "-o", "report.html"],
        ["deploy", f"{MODEL}@production", "--name", DEPLOYMENT, "--target", target,
         "--port", str(port)],
        ["monitor", "check", DEPLOYMENT],
    ]  # fmt: skip
    out.print(
        "\n".join(
            [
                f"Workspace: {root}  (the service was stopped; redeploy with the command below)",
                *(f"  modelyard -C {shlex.quote(rel)} {shlex.join(hint)}" for hint in hints),
                f"Done in {time.monotonic() - started:.0f} s.",
            ]
        )
    )
    with Workspace.at(root, environ={}) as again:
        rollouts = progressive_rollouts(again)
    ok = (
        bool(rollouts)
        and rollouts[0]["status"] == "promoted"
        and outcome.get("status") == "promoted"
        and production.version == v1.version + 1
        and client.failed == 0
    )
    return {
        "ok": ok,
        "production": production.ref,
        "outcome": outcome,
        "report_id": result.report.id,
        "sent": client.sent,
        "failed": client.failed,
        "report": report_path,
        "scored": scored,
        "hints": hints,
        "rollouts": rollouts,
    }


def progressive_rollouts(ws: Any) -> list[dict[str, Any]]:
    from modelyard.monitor import progressive

    return progressive.rollouts(ws, DEPLOYMENT)


def score_newest_batch(ws: Any, path: Path) -> Any:
    """What a nightly job does: snapshot the batch, derive the model's inputs, score them with
    the production model into ``maintenance-scores`` (its drift feeds the monitor)."""
    from pipeline import snapshot_features

    import modelyard

    snapshot = modelyard.data.add(path, name="sensors", workspace=ws).version
    frame = modelyard.data.read_frame(snapshot.ref, ws)
    to_score = snapshot_features(frame, snapshot)
    return modelyard.predict(
        f"{MODEL}@production",
        to_score.ref,
        output="maintenance-scores",
        columns=["machine_id"],
        workspace=ws,
    )


def _print_rollout(out: Any, ws: Any) -> None:
    """The challenger's shadow and canary steps, each with its analysis table."""
    from modelyard.cli.deploy import render_analysis
    from modelyard.monitor import progressive

    for rollout in progressive.rollouts(ws, DEPLOYMENT, limit=1):
        out.print(f"{rollout['strategy']} rollout of {rollout['candidate']}: {rollout['status']}"
                  f" - {rollout['reason']}")  # fmt: skip
        for step, analysis in progressive.step_analyses(rollout):
            title = f"step {step['index']}: {step['mode']} {step['percent']:g} %"
            render_analysis(out, title, analysis)


def _print_check(out: Any, result: Any) -> None:
    from modelyard.cli.monitor import print_result

    print_result(out, result)


def _events(out: Any) -> Any:
    def show(event: Any) -> None:
        if event.status in {"finished", "cached", "failed"}:
            took = f" {event.duration_s:.1f} s" if event.duration_s is not None else ""
            out.print(f"  {event.step}: {event.status}{took}")

    return show


def _docker_target(out: Any) -> str:
    try:
        from modelyard.images import DockerEngine

        DockerEngine.from_env().ping()
    except Exception as exc:
        out.print(f"[yellow]--docker: no Docker engine answers ({exc}); using the local target")
        return "local"
    return "docker"


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    sys.exit(main())
