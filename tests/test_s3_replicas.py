"""Two ``modelyard server`` processes over one PostgreSQL schema and one bucket, behind HAProxy
balancing round-robin, behave as one server: a tracked run, a registration and a 200 MB
artifact go through both, and the artifact's bytes go through neither (HAProxy's counters)."""

from __future__ import annotations

import csv
import hashlib
import io
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from conftest import require_service
from conftest_remote import free_port
from conftest_s3 import keys, s3_env
from modelyard.workspace import Workspace

pytestmark = [pytest.mark.slow, pytest.mark.postgres]
MB = 1_000_000
ARTIFACT_BYTES = 200 * MB


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 90
    while True:
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise AssertionError(f"{url} did not start:\n{log.read_text()[-2000:]}")
        time.sleep(0.1)


def _haproxy_config(listen: int, replicas: list[int], sock: Path) -> str:
    servers = [f"  server r{i} 127.0.0.1:{port} check inter 1s" for i, port in enumerate(replicas)]
    return "\n".join(
        [
            "global",
            f"  stats socket {sock} mode 600 level admin",
            "defaults",
            "  mode http",
            "  timeout connect 2s",
            "  timeout client 300s",
            "  timeout server 300s",
            "frontend team",
            f"  bind 127.0.0.1:{listen}",
            "  default_backend replicas",
            "backend replicas",
            "  balance roundrobin",  # every request to the next replica in turn
            "  option http-server-close",
            *servers,
            "",
        ]
    )


def _stats(sock: Path) -> dict[str, dict[str, str]]:
    """HAProxy's per-server counters, from its stats socket."""
    with socket.socket(socket.AF_UNIX) as s:
        s.connect(str(sock))
        s.sendall(b"show stat\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    rows = csv.DictReader(io.StringIO(data.decode().lstrip("# ")))
    return {row["svname"]: row for row in rows if row["pxname"] == "replicas"}


@pytest.fixture
def cluster(
    pg_url: str, bucket: str, tmp_path: Path
) -> Iterator[tuple[str, str, list[Path], Path]]:
    """(proxy URL, admin token, replica workspaces, HAProxy stats socket)."""
    require_service(shutil.which("haproxy") is not None, "haproxy is not installed")
    shared = {"MODELYARD_STORE_URL": pg_url, **s3_env(bucket)}
    roots = [tmp_path / "replica-a", tmp_path / "replica-b"]
    for root in roots:  # two folders: each replica's artifact folder is only its own cache
        Workspace.init(root, environ=shared)[0].close()
    with Workspace.at(roots[0], environ=shared) as ws:
        _, admin = ws.store.tokens.create("test-admin", "admin")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MODELYARD_", "AWS_"))}
    env.update(shared)
    procs: list[subprocess.Popen[bytes]] = []
    ports = [free_port(), free_port()]
    try:
        for root, port in zip(roots, ports, strict=True):
            log = root / "server.log"
            with log.open("wb") as out:
                procs.append(
                    subprocess.Popen(
                        [str(Path(sys.executable).parent / "modelyard"), "server"]
                        + ["--port", str(port)],
                        cwd=root,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
                )
            _wait_healthy(f"http://127.0.0.1:{port}", procs[-1], log)
        listen, sock = free_port(), tmp_path / "haproxy.sock"
        cfg = tmp_path / "haproxy.cfg"
        cfg.write_text(_haproxy_config(listen, ports, sock))
        hlog = tmp_path / "haproxy.log"
        with hlog.open("wb") as out:
            procs.append(
                subprocess.Popen(
                    ["haproxy", "-db", "-f", str(cfg)], stdout=out, stderr=subprocess.STDOUT
                )
            )
        _wait_healthy(f"http://127.0.0.1:{listen}", procs[-1], hlog)
        yield f"http://127.0.0.1:{listen}", admin, roots, sock
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def test_two_replicas_behind_haproxy_behave_as_one(
    cluster: tuple[str, str, list[Path], Path], s3: Any, bucket: str, tmp_path: Path
) -> None:
    from sklearn.linear_model import LogisticRegression

    from modelyard import models
    from modelyard.tracking import get_run, start_run

    url, admin, replicas, sock = cluster
    client_env = {"MODELYARD_URL": url, "MODELYARD_TOKEN": admin}
    big = tmp_path / "weights.bin"
    with big.open("wb") as out:
        for i in range(ARTIFACT_BYTES // MB):
            out.write(os.urandom(MB - 8) + i.to_bytes(8, "big"))
    expected = _sha256(big)
    before = _stats(sock)

    ws, _ = Workspace.init(tmp_path / "alice", environ=client_env)
    x = np.random.default_rng(0).normal(size=(60, 3))
    model = LogisticRegression().fit(x, (x[:, 0] > 0).astype(int))
    with start_run(name="train", params={"c": 1.0}, workspace=ws) as run:
        for step in range(20):  # batched metric writes land on both replicas
            run.log_metric("loss", 1.0 / (step + 1), step=step)
        digest = run.log_artifact(big, "weights.bin")
        run.log_model(model, "model", input_example=x[:5])
    version = models.register(run.id, name="team-model", workspace=ws)
    assert (version.name, version.version) == ("team-model", 1)
    ws.close()
    assert digest == expected

    ws2, _ = Workspace.init(tmp_path / "bob", environ=client_env)  # another client, empty cache
    details = get_run(ws2, run.id)
    assert details.status == "finished"
    assert details.run.params == {"c": "1.0"}
    assert details.metric_steps == {"loss": 20}
    assert {a.name: a.digest for a in details.artifacts}["weights.bin"] == expected
    ws2.artifacts.export_file(expected, tmp_path / "back.bin")
    assert _sha256(tmp_path / "back.bin") == expected
    assert [v.version for v in models.list_versions("team-model", workspace=ws2)] == [1]
    ws2.close()

    after = _stats(sock)
    served = {name: int(after[name]["stot"]) - int(before[name]["stot"]) for name in ("r0", "r1")}
    assert all(n >= 5 for n in served.values()), f"both replicas must serve requests: {served}"
    carried = {
        name: (int(after[name]["bin"]) - int(before[name]["bin"]))
        + (int(after[name]["bout"]) - int(before[name]["bout"]))
        for name in ("r0", "r1")
    }
    assert sum(carried.values()) < 20 * MB, f"the 200 MB went through a replica: {carried}"
    hexd = expected[7:]
    assert f"team/artifacts/sha256/{hexd[:2]}/{hexd[2:]}" in keys(s3, bucket)
    for root in replicas:  # neither replica holds the big blob, even in its cache
        assert not list((root / ".modelyard" / "artifacts").rglob(hexd[2:]))
