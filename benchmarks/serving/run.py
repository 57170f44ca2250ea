"""modelyard's server vs a bare ASGI app, same models, same wrk load, one run.

    .venv/bin/python benchmarks/serving/run.py [--duration 5]

Prints req/s and p50/p99 for 1 row at c=1/16/64 and 100-row batches at c=16, and the ratio to
the bare app. mlflow/BentoML are not compared here (see README); wrk must be on PATH.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

HERE = Path(__file__).resolve().parent
N_FEATURES = 10
SCENARIOS = [
    ("1 row c=1", 1, 1),
    ("1 row c=16", 1, 16),
    ("1 row c=64", 1, 64),
    ("100 rows c=16", 100, 16),
]


def _models(root: Path) -> dict[str, Path]:
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from modelyard.flavors import save_model

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, N_FEATURES))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    out = {}
    for name, model in (
        ("lr", make_pipeline(StandardScaler(), LogisticRegression())),
        ("rf", RandomForestClassifier(n_estimators=100, random_state=0)),
    ):
        model.fit(x, y)
        out[name] = root / name
        save_model(model, out[name], input_example=x[:5])
    return out


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(cmd: list[str], env: dict[str, str], port: int) -> tuple[subprocess.Popen[bytes], float]:
    started = time.monotonic()
    proc = subprocess.Popen(
        cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=HERE
    )
    body = {"instances": [[0.0] * N_FEATURES]}
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {cmd}")
        try:
            if (
                httpx.post(f"http://127.0.0.1:{port}/invocations", json=body, timeout=1).status_code
                == 200
            ):
                return proc, time.monotonic() - started
        except httpx.TransportError:
            time.sleep(0.02)


def _wrk(port: int, rows: int, conns: int, duration: int, lua: Path) -> tuple[float, float, float]:
    body = '{"instances": [' + ",".join(["[" + ",".join(["0.5"] * N_FEATURES) + "]"] * rows) + "]}"
    lua.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = '{body}'\n"
    )
    out = subprocess.run(
        [
            "wrk",
            "-t",
            "1",
            "-c",
            str(conns),
            "-d",
            f"{duration}s",
            "--latency",
            "-s",
            str(lua),
            f"http://127.0.0.1:{port}/invocations",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    if "Non-2xx" in out:
        raise SystemExit(f"non-2xx answers:\n{out}")

    def pct(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return rps, pct("50"), pct("99")


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=5)
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed")
    root = Path(tempfile.mkdtemp(prefix="modelyard-bench-"))
    models = _models(root)
    py = sys.executable
    results: dict[tuple[str, str, str], tuple[float, float, float]] = {}
    for model_name, model_dir in models.items():
        for server in ("bare", "modelyard"):
            port = _port()
            env = dict(os.environ, MODEL_DIR=str(model_dir))
            if server == "bare":
                cmd = [
                    py,
                    "-m",
                    "uvicorn",
                    "--factory",
                    "bare_app:create",
                    "--port",
                    str(port),
                    "--no-access-log",
                    "--log-level",
                    "warning",
                ]
            else:
                cmd = [
                    py,
                    "-m",
                    "modelyard.serving",
                    "--model-dir",
                    str(model_dir),
                    "--name",
                    model_name,
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--log-dir",
                    str(root / "log" / model_name),
                    "--log-level",
                    "warning",
                ]
            proc, cold = _start(cmd, env, port)
            rss = _rss_mib(proc.pid)
            print(
                f"{model_name:3} {server:10} cold start to first answer {cold:.2f}s, "
                f"RSS after warm-up {rss:.0f} MiB",
                flush=True,
            )
            try:
                for label, rows, conns in SCENARIOS:
                    results[(model_name, server, label)] = _wrk(
                        port, rows, conns, args.duration, root / "body.lua"
                    )
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
    print(
        f"\n{'model':5} {'scenario':15} {'bare req/s':>10} {'p50':>7} {'p99':>7} "
        f"{'modelyard':>10} {'p50':>7} {'p99':>7} {'ratio':>6}"
    )
    for model_name in models:
        for label, _, _ in SCENARIOS:
            b = results[(model_name, "bare", label)]
            m = results[(model_name, "modelyard", label)]
            print(
                f"{model_name:5} {label:15} {b[0]:10.0f} {b[1]:6.1f}ms {b[2]:6.1f}ms "
                f"{m[0]:10.0f} {m[1]:6.1f}ms {m[2]:6.1f}ms {m[0] / b[0]:6.2f}x"
            )
    shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
