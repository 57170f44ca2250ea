"""The server as a real process: load, SIGTERM, and an exact prediction-log count."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from modelyard.flavors import save_model
from modelyard.serving import read_predictions

sys.path.insert(0, str(Path(__file__).parent))
from _models import churn_pipeline

ROW = {"a": 0.1, "b": 0.2, "c": 0.3, "city": "x"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_sigterm_under_load_logs_every_answered_prediction_exactly_once(tmp_path: Path) -> None:
    model, frame = churn_pipeline()
    save_model(model, tmp_path / "model", input_example=frame[:5])
    port = _free_port()
    output = (tmp_path / "server.out").open("wb")
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "modelyard.serving",
            "--model-dir",
            str(tmp_path / "model"),
            "--name",
            "churn",
            "--version",
            "1",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--log-dir",
            str(tmp_path / "log"),
            "--log-level",
            "warning",
        ],
        stdout=output,
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            assert proc.poll() is None, (tmp_path / "server.out").read_text()
            try:
                if httpx.get(f"{base}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.05)

        ok = [0] * 8
        sent = threading.Semaphore(0)

        def worker(i: int) -> None:
            body = {"dataframe_records": [ROW] * (1 + i % 3)}
            v2 = {
                "inputs": [
                    {"name": n, "shape": [1], "datatype": "FP64", "data": [ROW[n]]}
                    for n in ("a", "b", "c")
                ]
                + [{"name": "city", "shape": [1], "datatype": "BYTES", "data": ["y"]}]
            }
            with httpx.Client(base_url=base, timeout=10) as client:
                n = 0
                while True:
                    try:
                        if n % 2:
                            r = client.post("/invocations", json=body)
                        else:
                            r = client.post("/v2/models/churn/infer", json=v2)
                    except httpx.TransportError:
                        return
                    n += 1
                    if 200 <= r.status_code < 300:
                        ok[i] += 1
                    sent.release()

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for _ in range(400):  # under load: at least 400 answers before the signal
            assert sent.acquire(timeout=30)
        proc.send_signal(signal.SIGTERM)
        for t in threads:
            t.join(timeout=60)
        # uvicorn re-raises the signal after its graceful shutdown: -SIGTERM is a clean exit.
        assert proc.wait(timeout=60) in (0, -signal.SIGTERM)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        output.close()
    log = (tmp_path / "server.out").read_text()
    assert "Traceback" not in log, log
    table = read_predictions(tmp_path / "log")
    assert sum(ok) >= 400
    assert table.num_rows == sum(ok)
    assert len(set(table.column("request_id").to_pylist())) == table.num_rows
