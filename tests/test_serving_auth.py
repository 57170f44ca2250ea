"""Predict tokens on a model server (issue #7): the prediction routes need a team-server token
whose role grants ``predict``, checked by the team server itself (so expiry and revocation
hold) and cached briefly; health and metrics stay open; no verdict means no prediction."""

from __future__ import annotations

import asyncio
import http.server
import logging
import subprocess
import sys
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from _asgi import AppClient
from _models import AddOne
from conftest_remote import RunningServer, free_port, start_server
from modelyard.errors import ConfigError
from modelyard.flavors import save_model
from modelyard.server import create_app as create_team_app
from modelyard.serving import ServeConfig, create_app, read_feedback, read_predictions
from modelyard.serving.auth import TokenVerifier, Verdict
from modelyard.workspace import Workspace

V2 = {"inputs": [{"name": "input-0", "shape": [1, 3], "datatype": "FP64", "data": [1, 2, 3]}]}
MLFLOW = {"instances": [[1.0, 2.0, 3.0]]}
OPEN = ["/v2/health/live", "/v2/health/ready", "/ping", "/health", "/v2", "/v2/models/m",
        "/v2/models/m/ready", "/v2/models/m/versions/1/ready", "/metrics"]  # fmt: skip


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("model") / "m"
    save_model(AddOne(), path, input_example=np.zeros((2, 3)))
    return path


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    ws, _ = Workspace.init(tmp_path_factory.mktemp("team") / "ws", environ={})
    running = start_server(ws)
    yield running
    running.stop()
    ws.close()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def serve(model_dir: Path, log_dir: Path, auth_url: str | None) -> AppClient:
    config = ServeConfig(log_dir=log_dir, auth_url=auth_url, allow_pickle=True)  # our own code
    return AppClient(create_app(model_dir, name="m", version="1", config=config))


def counting(verifier: TokenVerifier) -> list[str]:
    """Record each question the verifier asks the team server (secrets stay in the test)."""
    asked: list[str] = []
    check = verifier.check

    def counted(secret: str) -> Verdict:
        asked.append(secret)
        return check(secret)

    verifier.check = counted  # type: ignore[method-assign]
    return asked


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def predict_all(client: AppClient, headers: dict[str, str]) -> list[httpx.Response]:
    return [
        client.post("/v2/models/m/infer", json=V2, headers=headers),
        client.post("/v2/models/m/versions/1/infer", json=V2, headers=headers),
        client.post("/invocations", json=MLFLOW, headers=headers),
        client.post("/v1/feedback", json={"request_id": "r1", "label": 1}, headers=headers),
    ]


# ---- the team server's side ----------------------------------------------------------------


def test_the_team_server_says_who_a_predict_token_is(sqlite_workspace: Workspace) -> None:
    tokens = sqlite_workspace.store.tokens
    _, predict = tokens.create("svc", "predict")
    _, soon = tokens.create("ci", "write", expires_at=datetime.now(UTC) + timedelta(hours=1))
    _, read = tokens.create("viewer", "read")
    with AppClient(create_team_app(sqlite_workspace)) as client:
        ok = client.post("/api/v1/auth/check", headers=bearer(predict))
        assert ok.status_code == 200, ok.text
        assert ok.json() == {
            "name": "svc",
            "role": "predict",
            "permissions": ["predict"],
            "auth": True,
            "expires_in_s": None,
        }
        writer = client.post("/api/v1/auth/check", headers=bearer(soon)).json()
        assert writer["permissions"] == ["predict", "read", "write"]
        assert 3500 < writer["expires_in_s"] <= 3600
        assert client.post("/api/v1/auth/check", headers=bearer(read)).status_code == 403
        missing = client.post("/api/v1/auth/check")
        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == "Bearer"
        assert client.get("/api/v1/auth/check", headers=bearer(predict)).status_code == 405


# ---- the model server's side ---------------------------------------------------------------


def test_prediction_routes_need_a_token_and_health_stays_open(
    model_dir: Path, team: RunningServer, tmp_path: Path
) -> None:
    with serve(model_dir, tmp_path, team.url) as client:
        for headers in ({}, {"authorization": "Basic abc"}, {"authorization": "Bearer "},
                        {"authorization": team.token("predict")}):  # fmt: skip
            for response in predict_all(client, headers):
                assert response.status_code == 401, (headers, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
        v2, _, mlflow, feedback = predict_all(client, {})
        assert v2.json() == {"error": "missing bearer token"}
        assert mlflow.json() == {"error_code": "UNAUTHENTICATED", "message": "missing bearer token"}
        assert feedback.json() == {"error": "missing bearer token"}
        for garbage in ("myd_not-a-token", "x" * 2000, "two words"):
            response = client.post("/invocations", json=MLFLOW, headers=bearer(garbage))
            assert response.status_code == 401, garbage
            assert response.json()["message"] == "invalid, expired or revoked token"
        for path in OPEN:
            assert client.get(path).status_code == 200, path
        metrics = client.get("/metrics").text
        assert 'route="/invocations",status="401"' in metrics
    assert read_predictions(tmp_path).num_rows == 0  # refused requests predict nothing


def test_roles_that_grant_predict_pass_and_others_are_forbidden(
    model_dir: Path, team: RunningServer, tmp_path: Path
) -> None:
    with serve(model_dir, tmp_path, team.url) as client:
        for role in ("predict", "write", "admin"):
            for response in predict_all(client, bearer(team.token(role))):
                assert response.status_code == 200, (role, response.text)
        assert client.post(
            "/invocations", json=MLFLOW, headers=bearer(team.token("predict"))
        ).json() == {"predictions": [2.0]}
        reader = bearer(team.token("read"))
        for response in predict_all(client, reader):
            assert response.status_code == 403, response.text
            assert "www-authenticate" not in response.headers
        refused = client.post("/invocations", json=MLFLOW, headers=reader)
        assert refused.json()["error_code"] == "PERMISSION_DENIED"
        assert "'predict'" in refused.json()["message"]


def test_verdicts_are_cached_and_a_revocation_lands_within_the_ttl(
    model_dir: Path, team: RunningServer, tmp_path: Path
) -> None:
    clock = Clock()
    with serve(model_dir, tmp_path, team.url) as client:
        verifier = TokenVerifier(team.url, ttl_s=30, negative_ttl_s=5, clock=clock)
        client.app.auth = verifier
        asked = counting(verifier)
        token, secret = team.workspace.store.tokens.create("app", "predict")
        for _ in range(5):
            assert (
                client.post("/invocations", json=MLFLOW, headers=bearer(secret)).status_code == 200
            )
        assert len(asked) == 1  # one question; the other requests were a dict lookup
        team.workspace.store.tokens.revoke(token.id)
        clock.now += 29
        assert client.post("/invocations", json=MLFLOW, headers=bearer(secret)).status_code == 200
        clock.now += 2  # past the TTL: asked again, and the revocation holds
        revoked = client.post("/invocations", json=MLFLOW, headers=bearer(secret))
        assert revoked.status_code == 401
        assert len(asked) == 2
        clock.now += 4  # a refusal is cached for its shorter TTL
        assert client.post("/invocations", json=MLFLOW, headers=bearer(secret)).status_code == 401
        assert len(asked) == 2
        clock.now += 2
        assert client.post("/invocations", json=MLFLOW, headers=bearer(secret)).status_code == 401
        assert len(asked) == 3


def test_concurrent_first_requests_share_one_check(
    model_dir: Path, team: RunningServer, tmp_path: Path
) -> None:
    with serve(model_dir, tmp_path, team.url) as client:
        assert client.app.auth is not None
        asked = counting(client.app.auth)
        headers = bearer(team.token("predict"))

        async def burst() -> list[httpx.Response]:
            calls = (
                client._client.post("/invocations", json=MLFLOW, headers=headers) for _ in range(20)
            )
            return list(await asyncio.gather(*calls))

        responses = client.loop.run_until_complete(burst())
        assert [r.status_code for r in responses] == [200] * 20
        assert len(asked) == 1


def test_expired_tokens_are_refused_and_never_cached_past_their_expiry(
    model_dir: Path, team: RunningServer, tmp_path: Path
) -> None:
    with serve(model_dir, tmp_path, team.url) as client:
        expired = bearer(team.token("predict", expired=True))
        for response in predict_all(client, expired):
            assert response.status_code == 401
    _, soon = team.workspace.store.tokens.create(
        "short", "predict", expires_at=datetime.now(UTC) + timedelta(seconds=10)
    )
    verdict = TokenVerifier(team.url, ttl_s=30).check(soon)
    assert verdict.status == 200
    assert 0 < verdict.ttl_s <= 10


def test_an_unreachable_team_server_fails_closed(
    model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    ws, _ = Workspace.init(tmp_path / "team", environ={})
    running = start_server(ws)
    clock = Clock()
    caplog.set_level(logging.INFO, logger="modelyard.serving")
    with serve(model_dir, tmp_path / "log", running.url) as client:
        verifier = TokenVerifier(running.url, clock=clock)
        client.app.auth = verifier
        known, other = running.token("predict"), running.token("predict")
        assert client.post("/invocations", json=MLFLOW, headers=bearer(known)).status_code == 200
        running.stop()
        ws.close()
        # Verified 0 s ago: still within the TTL. Never verified: 503, never a pass.
        assert client.post("/invocations", json=MLFLOW, headers=bearer(known)).status_code == 200
        for response in predict_all(client, bearer(other)):
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"] == "1"
            assert "team server is unavailable" in response.text
        assert (
            client.post("/invocations", json=MLFLOW, headers=bearer(other)).json()["error_code"]
            == "TEMPORARILY_UNAVAILABLE"
        )
        clock.now += 31
        assert client.post("/invocations", json=MLFLOW, headers=bearer(known)).status_code == 503
        assert client.post("/invocations", json=MLFLOW, headers={}).status_code == 401
        for path in OPEN:
            assert client.get(path).status_code == 200, path
    warnings = [r for r in caplog.records if "cannot verify tokens" in r.getMessage()]
    assert len(warnings) == 1  # once when it went down, not once per request
    assert running.url in warnings[0].getMessage()


def test_nothing_listening_and_wrong_answers_fail_closed(
    model_dir: Path, team: RunningServer, tmp_path: Path
) -> None:
    token = team.token("predict")
    for url in (f"http://127.0.0.1:{free_port()}", f"{team.url}/not-the-root"):
        verifier = TokenVerifier(url, timeout_s=2)
        with serve(model_dir, tmp_path, None) as client:
            client.app.auth = verifier
            response = client.post("/v2/models/m/infer", json=V2, headers=bearer(token))
            assert response.status_code == 503, (url, response.text)


def test_a_team_server_without_auth_vouches_for_nothing(model_dir: Path, tmp_path: Path) -> None:
    ws, _ = Workspace.init(tmp_path / "team", environ={})
    running = start_server(ws, auth=None)
    try:
        with serve(model_dir, tmp_path / "log", running.url) as client:
            response = client.post("/invocations", json=MLFLOW, headers=bearer("anything"))
            assert response.status_code == 503
    finally:
        running.stop()
        ws.close()


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_a_redirect_is_not_followed_with_the_token(
    model_dir: Path, team: RunningServer, tmp_path: Path, status: int
) -> None:
    """urllib follows a redirect of a POST as a GET and sends the Authorization header along,
    to any host; the verifier must not follow (here the target would even say yes)."""
    hits: list[tuple[str, str, str | None]] = []

    class Redirect(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            hits.append(("POST", self.path, self.headers.get("authorization")))
            self.send_response(status)
            self.send_header("Location", "/elsewhere")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def do_GET(self) -> None:
            hits.append(("GET", self.path, self.headers.get("authorization")))
            body = b'{"name": "x", "role": "admin", "permissions": ["predict"], "auth": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    token = team.token("predict")
    try:
        url = f"http://127.0.0.1:{httpd.server_address[1]}"
        with serve(model_dir, tmp_path, url) as client:
            response = client.post("/invocations", json=MLFLOW, headers=bearer(token))
            assert response.status_code == 503
        assert hits == [("POST", "/api/v1/auth/check", f"Bearer {token}")]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_the_token_never_reaches_logs_answers_or_the_prediction_log(
    model_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    ws, _ = Workspace.init(tmp_path / "team", environ={})
    running = start_server(ws)
    canary = running.token("predict")
    reader = running.token("read")
    seen: list[str] = []

    def record(response: httpx.Response) -> httpx.Response:
        seen.append(response.text)
        seen.append(repr(response.headers))
        return response

    try:
        with serve(model_dir, tmp_path / "log", running.url) as client:
            for headers in (bearer(canary), bearer(canary + "x"), {"authorization": canary},
                            {"authorization": f"Basic {canary}"}, bearer(reader)):  # fmt: skip
                for response in predict_all(client, headers):
                    record(response)
                for path in OPEN:
                    record(client.get(path, headers=headers))
            ok = record(client.post("/invocations", json=MLFLOW, headers=bearer(canary)))
            assert ok.status_code == 200
            client.app.auth = TokenVerifier(running.url)  # a cold cache for the outage below
            running.stop()
            down = record(client.post("/invocations", json=MLFLOW, headers=bearer(canary)))
            assert down.status_code == 503
    finally:
        running.stop()
        ws.close()
    predictions = read_predictions(tmp_path / "log")
    assert predictions.num_rows >= 4
    assert canary not in repr(predictions.to_pylist())
    assert canary not in repr(read_feedback(tmp_path / "log").to_pylist())
    for path in (tmp_path / "log").rglob("*"):
        if path.is_file():
            assert canary.encode() not in path.read_bytes(), path
    assert not any(canary in text or reader in text for text in seen)
    assert "cannot verify tokens" in caplog.text  # the outage was logged...
    assert canary not in caplog.text  # ...without the token
    assert reader not in caplog.text


# ---- off by default, configuration ---------------------------------------------------------


def test_auth_is_off_by_default_and_costs_nothing_then(model_dir: Path, tmp_path: Path) -> None:
    assert ServeConfig().auth_url is None
    with serve(model_dir, tmp_path, None) as client:
        assert client.app.auth is None
        assert client.post("/invocations", json=MLFLOW).status_code == 200
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from modelyard.serving import ServeConfig, create_app\n"
        f"create_app(Path({str(model_dir)!r}), name='m', version='1', config=ServeConfig())\n"
        "print('modelyard.serving.auth' in sys.modules)\n"
        "app = create_app(Path('.'), name='m', version='1',"
        " config=ServeConfig(auth_url='http://127.0.0.1:9'))\n"
        "import contextlib\n"
        "with contextlib.suppress(Exception):\n"
        "    app.auth.check('myd_x')\n"
        "bad = sorted({m.split('.')[0] for m in sys.modules} & {'fastapi', 'httpx', 'sqlalchemy',"
        " 'starlette', 'click', 'rich'})\n"
        "bad += [m for m in sys.modules if m.startswith(('modelyard.store', 'modelyard.server'))]\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "[]"]


def test_config_from_env_and_cli(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "MODELYARD_SERVE_AUTH_URL": "https://team.internal:5500/",
        "MODELYARD_SERVE_AUTH_TTL_S": "10",
    }
    config = ServeConfig.from_env(env)
    assert config.auth_url == "https://team.internal:5500/"
    assert config.auth_ttl_s == 10.0
    assert ServeConfig.from_env(config.to_env()) == config
    assert ServeConfig.from_env({"MODELYARD_SERVE_AUTH_URL": ""}).auth_url is None
    for url in (
        "ftp://team",
        "team.internal:5500",
        "http://",
        "http://bob:pw@team",
        "http://t/?x=1",
    ):
        with pytest.raises(ConfigError, match="auth_url") as info:
            ServeConfig(auth_url=url)
        assert "pw" not in str(info.value)
    with pytest.raises(ConfigError, match="auth_ttl_s"):
        ServeConfig(auth_ttl_s=-1)
    assert TokenVerifier("http://team:5500/").check_url == "http://team:5500/api/v1/auth/check"

    from modelyard.serving import __main__ as entry
    from modelyard.serving import runner

    got: dict[str, Any] = {}
    monkeypatch.setattr(runner, "serve", lambda *a, **kw: got.update(kw))
    monkeypatch.delenv("MODELYARD_SERVE_AUTH_URL", raising=False)
    assert entry.main(["--model-dir", ".", "--name", "m", "--auth-url", "http://team:5500"]) == 0
    assert got["config"].auth_url == "http://team:5500"
    assert entry.main(["--model-dir", ".", "--name", "m", "--auth-url", "nope"]) == 1


def test_cli_serve_passes_the_auth_url(
    sqlite_workspace: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from types import SimpleNamespace

    from click.testing import CliRunner

    import modelyard.models
    import modelyard.serving
    from modelyard.cli.main import cli

    version = SimpleNamespace(name="m", version=1, ref="m@1", flavor="python")
    plan = SimpleNamespace(
        version=version, model_dir=tmp_path, prediction_dir=tmp_path, allow_pickle=False
    )
    got: dict[str, Any] = {}
    monkeypatch.setattr(modelyard.models, "plan_serving", lambda ref, ws: plan)
    monkeypatch.setattr(modelyard.serving, "serve", lambda *a, **kw: got.update(kw))
    monkeypatch.delenv("MODELYARD_SERVE_AUTH_URL", raising=False)
    args = ["serve", "m@1", "--auth-url", "http://team:5500"]
    result = CliRunner().invoke(cli, args, env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    assert got["config"].auth_url == "http://team:5500"
    assert "prediction routes need a token of http://team:5500" in result.output
    result = CliRunner().invoke(cli, ["serve", "m@1"], env={"MODELYARD_SERVE_AUTH_URL": "x"})
    assert result.exit_code == 1
    assert "auth_url must be the team server's http(s) URL" in result.output


def test_the_cache_is_bounded_and_an_outage_is_logged_once_until_recovery(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from modelyard.serving.auth import AuthUnavailable
    from modelyard.serving.handlers import HTTPError

    caplog.set_level(logging.INFO, logger="modelyard.serving")
    clock = Clock()
    verifier = TokenVerifier("http://team.invalid", max_entries=3, clock=clock)
    up = [True]
    asked: list[str] = []

    def check(secret: str) -> Verdict:
        asked.append(secret)
        if not up[0]:
            raise AuthUnavailable("connection refused")
        return Verdict(200, "", 30.0)

    verifier.check = check  # type: ignore[method-assign]

    def status(token: str, action: str = "infer") -> int:
        async def call() -> int:
            try:
                await verifier.authorize(action, {b"authorization": f"Bearer {token}".encode()})
            except HTTPError as exc:
                return exc.status
            return 200

        return asyncio.run(call())

    try:
        assert [status(f"t{i}") for i in range(5)] == [200] * 5
        assert len(verifier._cache) == 3  # bounded: the oldest made way
        assert status("t4") == 200
        assert status("t0") == 200
        assert asked == ["t0", "t1", "t2", "t3", "t4", "t0"]
        assert status("anything", action="metrics") == 200  # open routes ask nothing
        up[0] = False
        clock.now += 31
        assert status("t0") == 503
        assert status("t9") == 503  # within the retry pause: not even asked
        assert asked[-1] == "t0"
        clock.now += 1.5
        assert status("t9") == 503
        up[0] = True
        clock.now += 1.5
        assert status("t9") == 200
    finally:
        verifier.close()
    messages = [r.getMessage() for r in caplog.records]
    assert sum("cannot verify tokens" in m for m in messages) == 1
    assert sum("verifies tokens again" in m for m in messages) == 1
