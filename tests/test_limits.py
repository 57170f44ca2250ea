"""Limits before work, on the team server and the model server, as real processes over real
sockets: bodies over the cap refused before they are read, authentication before the body,
deadlines for a trickling head or body, JSON depth, and the Host allow-list."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psutil
import pytest

from modelyard.httpguard import allowed_hosts_for_bind, json_too_deep, normalise_host
from modelyard.workspace import Workspace

sys.path.insert(0, str(Path(__file__).parent))
from conftest_remote import free_port

TIMEOUT_S = 2.0  # header and body deadlines of the servers started here


@dataclass
class Proc:
    port: int
    proc: subprocess.Popen[bytes]
    log: Path
    token: str | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def rss(self) -> int:
        return int(psutil.Process(self.proc.pid).memory_info().rss)


def _start(argv: list[str], log: Path, ready: str, env: dict[str, str], port: int) -> Proc:
    out = log.open("wb")
    proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **env})
    out.close()
    running = Proc(port, proc, log)
    deadline = time.monotonic() + 60
    while True:
        assert proc.poll() is None, log.read_text()
        try:
            if httpx.get(running.url + ready, timeout=1).status_code == 200:
                return running
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "the server did not start: " + log.read_text()
        time.sleep(0.05)


def _stop(running: Proc) -> None:
    running.proc.terminate()
    try:
        running.proc.wait(timeout=20)
    except subprocess.TimeoutExpired:  # pragma: no cover - a hung server
        running.proc.kill()
        running.proc.wait()


def _team_server(tmp: Path, *flags: str, env: dict[str, str] | None = None) -> Proc:
    ws, _ = Workspace.init(tmp / "ws", environ={})
    _, secret = ws.store.tokens.create("limits-test", "admin")
    ws.close()
    port = free_port()
    argv = [
        sys.executable,
        "-c",
        "from modelyard.cli.main import main; main()",
        "-C",
        str(tmp / "ws"),
        "server",
        "--port",
        str(port),
        *flags,
    ]
    limits = {
        "MODELYARD_SERVER_HEADER_TIMEOUT_S": str(TIMEOUT_S),
        "MODELYARD_SERVER_BODY_TIMEOUT_S": str(TIMEOUT_S),
        **(env or {}),
    }
    running = _start(argv, tmp / "server.log", "/api/health", limits, port)
    running.token = secret
    return running


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    running = _team_server(tmp_path_factory.mktemp("team"))
    yield running
    _stop(running)


def _exchange(
    port: int, head: bytes, body: Iterable[bytes], watch: Proc | None = None, wait_s: float = 30
) -> tuple[int, int]:
    """Send ``head`` then ``body`` chunks from a thread while reading the answer here; returns
    (status, peak RSS of ``watch`` while it lasted). The sender stops when the server answers
    or closes (a refused body is never read, so writing more of it fails)."""
    sock = socket.create_connection(("127.0.0.1", port))
    answered = threading.Event()

    def sender() -> None:
        try:
            sock.sendall(head)
            for chunk in body:
                if answered.is_set():
                    return
                sock.sendall(chunk)
        except OSError:
            return  # the server closed the connection: what a refusal does

    thread = threading.Thread(target=sender, daemon=True)
    thread.start()
    peak = watch.rss if watch is not None else 0
    data = b""
    sock.settimeout(0.05)
    deadline = time.monotonic() + wait_s
    try:
        while b"\r\n" not in data:
            assert time.monotonic() < deadline, "no answer"
            if watch is not None:
                peak = max(peak, watch.rss)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                continue
            except ConnectionResetError:
                break
            if not chunk:
                break
            data += chunk
    finally:
        answered.set()
        sock.close()
        thread.join(timeout=30)
    assert data.startswith(b"HTTP/1.1 "), data[:200]
    return int(data.split()[1]), peak


def _head(method: str, path: str, headers: dict[str, str]) -> bytes:
    lines = [
        f"{method} {path} HTTP/1.1",
        "Host: 127.0.0.1",
        *(f"{k}: {v}" for k, v in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def _chunked(total: int, size: int = 1 << 20) -> Iterator[bytes]:
    yield f"{size:x}\r\n".encode() + b"[" + b"1," * (size // 2 - 1) + b"1" + b"\r\n"
    sent = size
    piece = f"{size:x}\r\n".encode() + b"," + b"1," * (size // 2 - 1) + b"1" + b"\r\n"
    while sent < total:
        yield piece
        sent += size


MiB = 1 << 20
ROUTE = "/api/v1/store/runs/search"


@pytest.mark.slow
def test_an_anonymous_body_is_refused_before_it_is_read(team: Proc) -> None:
    """A 30 MB JSON body under the cap, without a token: 401 at once and the server's memory
    does not move (on main it read and parsed the body first: hundreds of MB)."""
    body = b"[" + b"1," * (15 * MiB - 1) + b"1]"
    head = _head(
        "POST", ROUTE, {"Content-Type": "application/json", "Content-Length": str(len(body))}
    )
    before = team.rss
    status, peak = _exchange(
        team.port, head, [body[i : i + MiB] for i in range(0, len(body), MiB)], team
    )
    assert status == 401
    assert peak - before < 10 * MiB, f"RSS grew by {(peak - before) / MiB:.0f} MiB"


@pytest.mark.slow
def test_an_anonymous_chunked_body_is_refused_before_it_is_read(team: Proc) -> None:
    head = _head(
        "POST", ROUTE, {"Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    )
    before = team.rss
    status, peak = _exchange(team.port, head, _chunked(200 * MiB), team)
    assert status == 401
    assert peak - before < 10 * MiB, f"RSS grew by {(peak - before) / MiB:.0f} MiB"


@pytest.fixture(scope="module")
def patient_team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    """A team server with the default body cap but deadlines far beyond any test's pace: on
    a loaded machine streaming the 32 MiB up to the cap can take longer than ``TIMEOUT_S``,
    and a 408 there would hide whether the cap works."""
    patient = {
        "MODELYARD_SERVER_HEADER_TIMEOUT_S": "600",
        "MODELYARD_SERVER_BODY_TIMEOUT_S": "600",
    }
    running = _team_server(tmp_path_factory.mktemp("patient"), env=patient)
    yield running
    _stop(running)


@pytest.mark.slow
def test_a_body_over_the_cap_gets_413_announced_or_streamed(patient_team: Proc) -> None:
    team = patient_team
    auth = {"Authorization": f"Bearer {team.token}", "Content-Type": "application/json"}
    announced = _head("POST", ROUTE, {**auth, "Content-Length": str(400 * MiB)})
    assert _exchange(team.port, announced, [b"[" * MiB])[0] == 413  # before a byte is read
    before = team.rss
    streamed = _head("POST", ROUTE, {**auth, "Transfer-Encoding": "chunked"})
    status, peak = _exchange(team.port, streamed, _chunked(400 * MiB), team, wait_s=300)
    assert status == 413
    # Buffered up to the 32 MiB cap at most, never the 400 MiB sent.
    assert peak - before < 100 * MiB, f"RSS grew by {(peak - before) / MiB:.0f} MiB"


def _closed_within(sock: socket.socket, trickle: bytes, limit_s: float) -> float:
    """Trickle ``trickle`` a byte every 0.2 s until the server closes; returns when it did."""
    start = time.monotonic()
    sock.settimeout(0.2)
    for byte in trickle * 1000:
        elapsed = time.monotonic() - start
        assert elapsed < limit_s, f"still open after {elapsed:.1f} s"
        try:
            data = sock.recv(65536)
        except TimeoutError:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                return elapsed
            continue
        except ConnectionResetError:
            return elapsed
        if not data or data.startswith(b"HTTP/1.1 408"):
            return elapsed
        raise AssertionError(f"unexpected answer {data[:100]!r}")
    raise AssertionError("trickled everything")  # pragma: no cover


@pytest.mark.slow
def test_a_trickled_head_is_cut_off_at_the_deadline(team: Proc) -> None:
    with socket.create_connection(("127.0.0.1", team.port)) as sock:
        sock.sendall(b"GET /api/health HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        elapsed = _closed_within(sock, b"X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", 4 * TIMEOUT_S)
    assert elapsed >= TIMEOUT_S * 0.9  # it was the deadline, not a refusal


@pytest.mark.slow
def test_a_trickled_body_gets_408_at_the_deadline(team: Proc) -> None:
    with socket.create_connection(("127.0.0.1", team.port)) as sock:
        sock.sendall(
            _head(
                "POST",
                ROUTE,
                {
                    "Authorization": f"Bearer {team.token}",
                    "Content-Type": "application/json",
                    "Content-Length": "100000",
                },
            )
        )
        elapsed = _closed_within(sock, b"[1,", 4 * TIMEOUT_S)
    assert elapsed >= TIMEOUT_S * 0.9


@pytest.mark.parametrize("route", [ROUTE, "/api/v1/store/runs/log_metrics"])
def test_deep_json_is_a_400_not_a_500(team: Proc, route: str) -> None:
    auth = {"Authorization": f"Bearer {team.token}", "Content-Type": "application/json"}
    for depth in (100, 100_000):
        body = b"[" * depth + b"]" * depth
        answer = httpx.post(team.url + route, content=body, headers=auth, timeout=30)
        assert answer.status_code == 400, answer.text
        assert "nests deeper than 64" in answer.json()["message"]
    wrapped = {"run_id": "x", "points": [[[[[[[1.0]]]]]]]}  # shallow: the route decides
    assert httpx.post(team.url + route, json=wrapped, headers=auth, timeout=30).status_code < 500


def test_the_depth_check_counts_structure_not_strings() -> None:
    assert not json_too_deep(b'{"a": "[[[[[[[[[[[[[[[[[[[[["}', 3)
    assert not json_too_deep(b'{"a": [1, {"b": [2]}], "c": "]]]]"}', 4)
    assert json_too_deep(b'{"a": [1, {"b": [2]}]}', 3)
    assert not json_too_deep(b"[]" * 1000, 1)
    assert json_too_deep(b"[" * 65 + b"]" * 65, 64)
    assert not json_too_deep(b"[" * 64 + b"]" * 64, 64)
    assert not json_too_deep(b'"\\"[[[["', 1)


# ---- Host allow-list ----------------------------------------------------------------------


def test_allowed_hosts_follow_the_bind() -> None:
    assert allowed_hosts_for_bind("127.0.0.1") == {"127.0.0.1", "localhost", "::1"}
    assert allowed_hosts_for_bind("::1") == {"127.0.0.1", "localhost", "::1"}
    assert allowed_hosts_for_bind("0.0.0.0") is None
    assert allowed_hosts_for_bind("0.0.0.0", ["ml.internal"]) == {"ml.internal"}
    assert allowed_hosts_for_bind("10.0.0.5", ["ml.internal"]) == {"10.0.0.5", "ml.internal"}
    assert allowed_hosts_for_bind("127.0.0.1", ["*"]) is None
    assert normalise_host("[::1]:5500") == "::1"
    assert normalise_host("LOCALHOST:80") == "localhost"
    assert normalise_host("example.com.") == "example.com"


@pytest.mark.slow
def test_a_no_auth_loopback_server_answers_only_its_own_names(tmp_path: Path) -> None:
    """DNS rebinding: a page on evil.example resolving to 127.0.0.1 reaches the server with
    ``Host: evil.example``. On main the --no-auth server issued it an admin token."""
    running = _team_server(tmp_path, "--no-auth", "--allowed-host", "ml.internal")
    try:
        route = f"{running.url}/api/v1/store/tokens/create"
        body = {"name": "rebound", "role": "admin"}
        foreign = httpx.post(route, json=body, headers={"Host": f"evil.example:{running.port}"})
        assert foreign.status_code == 400
        assert "secret" not in foreign.text
        assert "invalid Host" in foreign.json()["message"]
        for host in ("localhost", "127.0.0.1", "[::1]", "ml.internal"):
            answer = httpx.get(
                f"{running.url}/api/health", headers={"Host": f"{host}:{running.port}"}
            )
            assert answer.status_code == 200, host
        ws, _ = Workspace.init(tmp_path / "ws", environ={})
        try:
            assert [t.name for t in ws.store.tokens.list()] == ["limits-test"]
        finally:
            ws.close()
    finally:
        _stop(running)


# ---- the model server -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def model_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Proc]:
    from _models import churn_pipeline
    from modelyard.flavors import save_model

    tmp = tmp_path_factory.mktemp("serve")
    model, frame = churn_pipeline()
    save_model(model, tmp / "model", input_example=frame[:5])
    port = free_port()
    argv = [
        sys.executable,
        "-m",
        "modelyard.serving",
        "--model-dir",
        str(tmp / "model"),
        "--name",
        "churn",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--log-dir",
        str(tmp / "log"),
        "--allowed-host",
        "churn.internal",
        "--log-level",
        "warning",
    ]
    env = {
        "MODELYARD_SERVE_HEADER_TIMEOUT_S": str(TIMEOUT_S),
        "MODELYARD_SERVE_BODY_TIMEOUT_S": str(TIMEOUT_S),
    }
    running = _start(argv, tmp / "serve.log", "/v2/health/ready", env, port)
    yield running
    _stop(running)


@pytest.mark.slow
def test_model_server_host_allow_list(model_server: Proc) -> None:
    url = model_server.url
    assert httpx.get(f"{url}/v2/health/live", headers={"Host": "evil.example"}).status_code == 400
    for host in ("localhost", f"127.0.0.1:{model_server.port}", "churn.internal"):
        assert httpx.get(f"{url}/v2/health/live", headers={"Host": host}).status_code == 200


@pytest.mark.slow
def test_model_server_deadlines(model_server: Proc) -> None:
    with socket.create_connection(("127.0.0.1", model_server.port)) as sock:
        sock.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert _closed_within(sock, b"X-Slow: aaaaaaaaaaaa\r\n", 4 * TIMEOUT_S) >= TIMEOUT_S * 0.9
    with socket.create_connection(("127.0.0.1", model_server.port)) as sock:
        head = _head(
            "POST",
            "/invocations",
            {"Content-Type": "application/json", "Content-Length": "5000"},
        )
        sock.sendall(head)
        assert _closed_within(sock, b'{"inputs": [', 4 * TIMEOUT_S) >= TIMEOUT_S * 0.9


@pytest.mark.slow
def test_model_server_refuses_deep_json_with_400(model_server: Proc) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    for route in ("/invocations", "/v2/models/churn/infer"):
        answer = httpx.post(
            model_server.url + route, content=deep, headers={"Content-Type": "application/json"}
        )
        assert answer.status_code == 400, (route, answer.text)
    label = b'{"request_id": "r1", "label": ' + b"[" * 70 + b"1" + b"]" * 70 + b"}"
    answer = httpx.post(
        model_server.url + "/v1/feedback",
        content=label,
        headers={"Content-Type": "application/json"},
    )
    assert answer.status_code == 400, answer.text
    assert "deeper than 64" in answer.json()["error"]


def test_server_limits_come_from_config_then_environment_then_flags() -> None:
    from modelyard.errors import ConfigError
    from modelyard.server.limits import ServerLimits, extra_hosts

    section = {"max_body_bytes": 1000, "body_timeout_s": 5, "allowed_hosts": ["ml.internal"]}
    env = {"MODELYARD_SERVER_MAX_BODY_BYTES": "2000", "MODELYARD_SERVER_ALLOWED_HOSTS": "a,b"}
    assert ServerLimits.read(section, {}).max_body_bytes == 1000
    assert ServerLimits.read(section, env).max_body_bytes == 2000
    limits = ServerLimits.read(section, env, max_body_bytes=3000, max_upload_bytes=None)
    assert (limits.max_body_bytes, limits.body_timeout_s) == (3000, 5.0)
    assert limits.max_upload_bytes == ServerLimits().max_upload_bytes
    assert extra_hosts(section, env) == ["ml.internal", "a", "b"]
    with pytest.raises(ConfigError, match="not a number"):
        ServerLimits.read({"max_body_bytes": "lots"}, {})
    with pytest.raises(ConfigError, match="must be positive"):
        ServerLimits.read({"header_timeout_s": 0}, {})
    with pytest.raises(ConfigError, match="must be a list"):
        extra_hosts({"allowed_hosts": "ml.internal"}, {})
