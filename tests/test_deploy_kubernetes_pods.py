"""Pods that start: the Deployment ``modelyard deploy --target kubernetes`` renders, run with
Docker exactly as its pod spec says (translated field by field by ``_pod_docker``), answers its
probes, predicts, logs predictions into its emptyDir, and stops cleanly.

On a cluster the same pod would crash if the image and the manifest disagreed (a read-only root
with the prediction log anywhere but a mounted volume; a user without a home; a probe path the
server does not serve): here it fails the same way, without a cluster.
"""

from __future__ import annotations

import json
import time
import urllib.request
from typing import Any

import pytest
from click.testing import CliRunner

from _pod_docker import PodRun, pod_of, pod_run, published
from modelyard import image_contract as contract
from modelyard.cli.main import cli
from modelyard.images import DockerEngine
from modelyard.packaging import push_model_image
from modelyard.workspace import Workspace

pytestmark = [pytest.mark.docker, pytest.mark.slow]
CONTAINER = "pytest-pod-churn"


def _inspect(engine: DockerEngine, name: str) -> dict[str, Any]:
    data: list[dict[str, Any]] = json.loads(engine.run(["container", "inspect", name]).stdout)
    return data[0]


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=3) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        exc.close()
        return exc.code
    except OSError:
        return 0


def _wait_ready(engine: DockerEngine, run: PodRun, timeout: float = 120) -> str:
    """The pod's base URL once its readiness probe answers 200, polled as a kubelet would;
    fails with the container's logs as soon as it exits (a pod in CrashLoopBackOff)."""
    probe = run.probes["readinessProbe"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = _inspect(engine, CONTAINER)
        if not data["State"]["Running"]:
            logs = engine.run(["logs", CONTAINER], check=False)
            pytest.fail(
                f"the pod exited with code {data['State']['ExitCode']}:\n"
                + (logs.stdout + logs.stderr).decode(errors="replace")[-3000:]
            )
        url = published(data, probe.port)
        if _get(url + probe.path) == 200:
            return url
        time.sleep(0.3)
    pytest.fail(f"the pod was not ready after {timeout:.0f} s")


def _in_pod(engine: DockerEngine, *command: str) -> str:
    return engine.run(["exec", CONTAINER, *command], timeout=60).stdout.decode()


@pytest.mark.timeout(600)  # the first session builds and pushes the image
def test_the_rendered_pod_starts_serves_and_logs_into_its_volume(
    churn_image: Workspace, engine: DockerEngine, open_registry: str
) -> None:
    ws = churn_image
    push_model_image("churn@1", f"{open_registry}/pods", workspace=ws, engine=engine)
    result = CliRunner().invoke(
        cli,
        ["-C", str(ws.root), "deploy", "churn@1", "--target", "kubernetes", "--name",
         "churn-api", "--dry-run", "-o", "json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    deployment = pod_of(json.loads(result.output))
    run = pod_run(deployment, name=CONTAINER)
    assert run.image.startswith(f"{open_registry}/pods/churn@sha256:")
    # What the manifest demands, so a translator that forgot one would not pass quietly.
    assert {"--read-only", "--user"} <= set(run.args)
    assert run.args[run.args.index("--cap-drop") + 1] == "ALL"
    env = {e["name"]: e["value"] for e in deployment["spec"]["template"]["spec"]["containers"][0]
           ["env"]}  # fmt: skip
    log_dir = env[contract.LOG_DIR_ENV]
    assert log_dir in run.volumes.values(), "the prediction log must be on a mounted volume"

    engine.run(["rm", "-f", CONTAINER], check=False)
    try:
        engine.run(run.args, timeout=300)
        url = _wait_ready(engine, run)
        for kind, probe in run.probes.items():
            assert _get(published(_inspect(engine, CONTAINER), probe.port) + probe.path) == 200, (
                kind
            )
        body = {"inputs": [{"name": "input-0", "datatype": "FP64", "shape": [2, 3],
                            "data": [0.5, 0.1, 0.2, -0.5, 0.1, 0.2]}]}  # fmt: skip
        request = urllib.request.Request(
            f"{url}/v2/models/churn/infer",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=10) as resp:
            answer = json.loads(resp.read())
        assert answer["model_name"] == "churn"
        assert answer["model_version"] == "1"
        assert answer["outputs"][0]["data"] == [1, 0]
        # The server runs as the manifest's user and writes its log into the emptyDir.
        assert _in_pod(engine, "id", "-u").strip() == str(contract.UID)
        pattern = f"{log_dir}/predictions/*.arrows*"  # the open segment is *.arrows.partial
        listing = ""
        deadline = time.monotonic() + 30
        while not listing.strip() and time.monotonic() < deadline:
            listing = _in_pod(
                engine, "python", "-c", f"import glob; print(*glob.glob({pattern!r}))"
            )
            time.sleep(0.3)
        assert listing.strip(), f"nothing logged under {log_dir}"
        # Termination as a kubelet does it: the preStop hook (the image's Python must be where
        # the manifest says), then SIGTERM with the grace period; the server drains and exits 0.
        assert run.pre_stop is not None
        engine.run(["exec", CONTAINER, *run.pre_stop], timeout=run.grace_s)
        engine.run(["stop", "-t", str(run.grace_s), CONTAINER], timeout=run.grace_s + 30)
        assert _inspect(engine, CONTAINER)["State"]["ExitCode"] == 0
    finally:
        engine.run(["rm", "-f", CONTAINER], check=False)
