"""``/metrics`` of the team server and of the model server, as Prometheus reads them: each real
scrape is piped into ``promtool check metrics`` (Debian's ``prometheus`` package; under CI a
missing promtool fails). The team server counts by route template, not raw path."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest_remote import RunningServer, server  # noqa: F401 - fixture
from modelyard.workspace import Workspace


@pytest.fixture(scope="session")
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        message = "promtool not installed (scripts/services.sh installs Debian's prometheus)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


def promtool_check(promtool: str, text: str) -> None:
    """``promtool check metrics`` exits non-zero on errors; lint findings are printed too and
    none are accepted."""
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=60
    )
    out = (done.stdout + done.stderr).decode()
    assert done.returncode == 0, out
    assert out.strip() == "", out


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {
        tuple(sorted(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    }


def test_team_server_metrics_by_route_template_pass_promtool(
    server: RunningServer,  # noqa: F811
    promtool: str,
) -> None:
    reader = server.token("read")
    headers = {"Authorization": f"Bearer {reader}"}
    with httpx.Client(base_url=server.url, timeout=10) as client:
        assert client.get("/metrics").status_code == 401  # a read token is needed
        for name in ("nope-a", "nope-b", "nope-c"):
            assert client.get(f"/api/v1/ui/models/{name}", headers=headers).status_code == 404
        assert client.get("/api/v1/ui/models", headers=headers).status_code == 200
        assert client.get("/no/such/path").status_code == 404
        answer = client.get("/metrics", headers=headers)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/plain; version=")
    text = answer.text
    promtool_check(promtool, text)
    requests = samples(text, "modelyard_server_requests_total")
    key = (("method", "GET"), ("route", "/api/v1/ui/models/{name}"), ("status", "404"))
    assert requests.get(key) == 3.0, requests  # three raw paths, one series
    assert not any("nope-a" in v for labels in requests for _, v in labels)
    assert requests[(("method", "GET"), ("route", "/metrics"), ("status", "401"))] == 1.0
    assert requests[(("method", "GET"), ("route", "<unmatched>"), ("status", "404"))] == 1.0
    counts = samples(text, "modelyard_server_request_duration_seconds_count")
    assert counts[(("method", "GET"), ("route", "/api/v1/ui/models/{name}"))] == 3.0
    errors = samples(text, "modelyard_server_store_errors_total")
    assert errors == {(("kind", "database"),): 0.0, (("kind", "unavailable"),): 0.0}


def _serve(app: Any) -> tuple[str, Any, threading.Thread]:
    import uvicorn

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    srv = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="critical", lifespan="off")
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not srv.started:
        assert thread.is_alive(), "the server did not start"
        assert time.monotonic() < deadline, "the server did not start in time"
        time.sleep(0.01)
    return f"http://127.0.0.1:{port}", srv, thread


@pytest.fixture
def store_down(tmp_path: Path) -> Iterator[str]:
    """A no-auth (loopback) server whose PostgreSQL store does not answer."""
    from modelyard.server import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = int(s.getsockname()[1])
    ws, _ = Workspace.init(tmp_path / "ws", environ={})
    ws.close()
    down = Workspace.at(
        tmp_path / "ws", environ={"MODELYARD_STORE_URL": f"postgresql://u@127.0.0.1:{dead}/x"}
    )
    url, srv, thread = _serve(create_app(down, auth=None))
    try:
        yield url
    finally:
        srv.should_exit = True
        thread.join(timeout=10)
        down.close()


def test_store_errors_are_counted(store_down: str, promtool: str) -> None:
    with httpx.Client(base_url=store_down, timeout=30) as client:
        answer = client.get("/api/v1/ui/models")
        assert answer.status_code == 503, answer.text
        text = client.get("/metrics").text  # open: this server runs without auth
    promtool_check(promtool, text)
    assert samples(text, "modelyard_server_store_errors_total")[(("kind", "unavailable"),)] == 1
    requests = samples(text, "modelyard_server_requests_total")
    assert requests[(("method", "GET"), ("route", "/api/v1/ui/models"), ("status", "503"))] == 1


def test_model_server_metrics_pass_promtool(tmp_path: Path, promtool: str) -> None:
    from test_serving_workers import _start

    user_dir = tmp_path / "user-metrics"
    user_dir.mkdir()
    model_server = _start(tmp_path, 1, user_dir)
    try:
        rows = [{"a": 1.0, "b": 2.0, "c": 3.0, "city": "x"}]
        answer = httpx.post(
            f"{model_server.base}/invocations", json={"dataframe_records": rows}, timeout=30
        )
        assert answer.status_code in (200, 400), answer.text  # either way a counted request
        text = model_server.scrape()
    finally:
        model_server.stop()
    assert "modelyard_requests_total" in text
    promtool_check(promtool, text)
