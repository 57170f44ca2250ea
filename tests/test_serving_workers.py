"""A multi-worker server's /metrics: one scrape, whichever worker answers it, reports the whole
server; the workers' shared metrics folder is private and removed on exit. One worker keeps its
metrics in memory, whatever the environment names."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from modelyard.deploy.traffic import traffic_from_metrics
from modelyard.errors import ConfigError
from modelyard.flavors import save_model
from modelyard.serving import metrics as server_metrics
from modelyard.serving.metrics import (
    MULTIPROC_ENV,
    forget_dead_workers,
    mark_process_dead,
    multiprocess_metrics,
    single_process_metrics,
)

sys.path.insert(0, str(Path(__file__).parent))
from _models import churn_pipeline
from conftest_remote import free_port

ROW = {"a": 0.1, "b": 0.2, "c": 0.3, "city": "x"}


def _wait(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    from prometheus_client.parser import text_string_to_metric_families

    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                found[tuple(sorted(sample.labels.items()))] = sample.value
    return found


@dataclass
class Server:
    base: str
    proc: subprocess.Popen[bytes]
    tmp: Path  # the server's TMPDIR: where its metrics folder is made
    log_dir: Path
    output: Path

    def scrape(self) -> str:
        # A fresh connection each time: any worker may answer.
        return httpx.get(f"{self.base}/metrics", timeout=10).text

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _start(tmp_path: Path, workers: int, user_dir: Path) -> Server:
    model, frame = churn_pipeline()
    save_model(model, tmp_path / "model", input_example=frame[:5])
    port = free_port()
    server_tmp = tmp_path / "server-tmp"
    server_tmp.mkdir()
    env = dict(os.environ)
    env.update(
        {
            "TMPDIR": str(server_tmp),
            MULTIPROC_ENV: str(user_dir),  # a folder someone else chose: never used
            "MODELYARD_SERVE_LOG_FLUSH_SECONDS": "0.05",
            "MODELYARD_SERVE_BATCHING": "false",
        }
    )
    output = tmp_path / "server.out"
    with output.open("wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "modelyard.serving",
                "--model-dir",
                str(tmp_path / "model"),
                "--name",
                "churn",
                "--port",
                str(port),
                "--host",
                "127.0.0.1",
                "--workers",
                str(workers),
                "--log-dir",
                str(tmp_path / "log"),
                "--log-level",
                "warning",
            ],  # fmt: skip
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = Server(f"http://127.0.0.1:{port}", proc, server_tmp, tmp_path / "log", output)

    def ready() -> bool:
        assert proc.poll() is None, output.read_text()
        try:
            return httpx.get(f"{server.base}/v2/health/ready", timeout=1).status_code == 200
        except httpx.TransportError:
            return False

    _wait(ready, "the server to become ready", timeout=60)
    return server


@pytest.fixture
def user_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "user-metrics"
    folder.mkdir()
    folder.chmod(0o777)
    return folder


@pytest.fixture
def two_workers(tmp_path: Path, user_dir: Path) -> Iterator[Server]:
    server = _start(tmp_path, 2, user_dir)
    try:
        yield server
    finally:
        server.stop()


def _answering_pids(log_dir: Path) -> set[str]:
    """Worker pids that wrote prediction-log segments
    (``predictions-<stamp>-<host>-<pid>-<seq>-<token>``)."""
    return {p.name.split("-")[-3] for p in (log_dir / "predictions").glob("predictions-*")}


@pytest.mark.slow
def test_one_scrape_of_a_two_worker_server_counts_every_request(
    two_workers: Server, user_dir: Path
) -> None:
    server = two_workers
    body = {"dataframe_records": [ROW]}
    sent = 0
    # New connections until both workers have answered (their log segments say so).
    deadline = time.monotonic() + 60
    while len(_answering_pids(server.log_dir)) < 2 or sent < 40:
        assert time.monotonic() < deadline, "the requests never reached both workers"
        with httpx.Client(base_url=server.base, timeout=10) as client:
            for _ in range(5):
                assert client.post("/invocations", json=body).status_code == 200
                sent += 1

    def total() -> float:
        return traffic_from_metrics([server.scrape()]).requests

    # A worker counts a request just after answering it: wait for the last to land.
    _wait(lambda: total() == sent, f"a scrape reporting all {sent} requests")
    for _ in range(10):  # whichever worker answers the scrape, it reports the whole server
        text = server.scrape()
        assert traffic_from_metrics([text]).requests == sent
        counts = _samples(text, "modelyard_requests_total")
        assert counts[(("route", "/invocations"), ("status", "200"))] == sent
        latency = _samples(text, "modelyard_request_duration_seconds_count")
        assert latency[(("route", "/invocations"),)] == sent
        assert _samples(text, "modelyard_batch_rows_count")[()] >= sent
        # Gauges of live workers: the scrape itself is the one request in flight.
        assert _samples(text, "modelyard_inflight_requests") == {(): 1.0}
        info = _samples(text, "modelyard_model_info")
        assert info == {(("flavor", "sklearn"), ("name", "churn"), ("version", "1")): 1.0}
        assert 0 < _samples(text, "modelyard_model_load_seconds")[()] < 60

    def queues_empty() -> bool:
        depth = _samples(server.scrape(), "modelyard_predlog_queue_depth")
        assert set(depth) == {(("log", "predictions"),), (("log", "feedback"),)}
        assert all(v >= 0 for v in depth.values())
        return all(v == 0 for v in depth.values())

    _wait(queues_empty, "the log queues to drain")

    # The workers share one private folder the server made; nothing went where the
    # environment pointed, and the folder is gone once the server stops.
    (folder,) = server.tmp.glob("modelyard-metrics-*")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert list(folder.glob("*.db"))
    assert list(user_dir.iterdir()) == []
    server.stop()
    assert server.proc.returncode in (0, -signal.SIGTERM)
    assert list(server.tmp.glob("modelyard-metrics-*")) == []
    assert "Traceback" not in server.output.read_text()


@pytest.mark.slow
def test_one_worker_keeps_its_metrics_in_memory(tmp_path: Path, user_dir: Path) -> None:
    server = _start(tmp_path, 1, user_dir)
    try:
        with httpx.Client(base_url=server.base, timeout=10) as client:
            for _ in range(7):
                assert client.post("/invocations", json={"inputs": [ROW]}).status_code == 200
        text = server.scrape()
        assert traffic_from_metrics([text]).requests == 7
        assert "modelyard_requests_created" in text  # the in-memory registry, not the files
    finally:
        server.stop()
    assert list(user_dir.iterdir()) == []
    assert list(server.tmp.glob("modelyard-metrics-*")) == []


def test_the_parent_makes_a_private_folder_and_removes_it(tmp_path: Path) -> None:
    env = {MULTIPROC_ENV: str(tmp_path), "prometheus_multiproc_dir": str(tmp_path)}
    with multiprocess_metrics(env) as folder:
        assert env == {MULTIPROC_ENV: str(folder)}
        assert folder != tmp_path
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700
        (folder / "counter_123.db").write_bytes(b"x")
    assert not folder.exists()
    assert env == {MULTIPROC_ENV: str(tmp_path), "prometheus_multiproc_dir": str(tmp_path)}

    single = {MULTIPROC_ENV: str(tmp_path), "prometheus_multiproc_dir": str(tmp_path)}
    single_process_metrics(single)
    if "prometheus_client" in sys.modules:  # it has decided already; the values stay put
        assert single == {MULTIPROC_ENV: str(tmp_path), "prometheus_multiproc_dir": str(tmp_path)}
    else:
        assert single == {}


def test_a_worker_refuses_a_metrics_folder_others_can_write(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(ConfigError, match="not a private folder"):
        server_metrics.Metrics("m", "1", "sklearn", multiprocess_dir=shared)
    with pytest.raises(ConfigError, match="missing: No such file"):
        server_metrics.Metrics("m", "1", "sklearn", multiprocess_dir=tmp_path / "missing")
    link = tmp_path / "link"
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    link.symlink_to(private)
    with pytest.raises(ConfigError, match="not a private folder"):
        server_metrics.Metrics("m", "1", "sklearn", multiprocess_dir=link)


def test_dead_workers_leave_the_live_gauges(tmp_path: Path) -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    me = os.getpid()
    for pid in (me, gone.pid):
        for name in (f"gauge_livesum_{pid}.db", f"gauge_livemax_{pid}.db", f"counter_{pid}.db"):
            (tmp_path / name).write_bytes(b"")
    forget_dead_workers(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [
            f"counter_{gone.pid}.db",
            f"counter_{me}.db",
            f"gauge_livemax_{me}.db",
            f"gauge_livesum_{me}.db",
        ]  # fmt: skip
    )
    mark_process_dead(tmp_path, me)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        [f"counter_{gone.pid}.db", f"counter_{me}.db"]
    )


def test_a_scrape_skips_a_file_a_worker_has_only_just_created(tmp_path: Path) -> None:
    from prometheus_client.mmap_dict import MmapedDict, mmap_key

    written = MmapedDict(str(tmp_path / "counter_101.db"))
    key = mmap_key("modelyard_requests", "modelyard_requests_total", ["route", "status"],
                   ["/invocations", "200"], "HTTP requests by route and status")  # fmt: skip
    written.write_value(key, 3.0, 0.0)
    written.close()
    (tmp_path / "counter_102.db").touch()  # opened by a starting worker, not yet sized
    families = list(server_metrics._WorkerFiles(tmp_path).collect())
    samples = [(s.name, s.labels, s.value) for f in families for s in f.samples]
    assert samples == [
        ("modelyard_requests_total", {"route": "/invocations", "status": "200"}, 3.0)
    ]
