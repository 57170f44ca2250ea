"""A/B: the model server of two source trees, same model, alternating ``wrk`` rounds.

    git archive main | tar -x -C /tmp/base
    .venv/bin/python benchmarks/serving/ab.py /tmp/base/src [--rows 1] [--rounds 8]

Both servers (``python -m modelyard.serving`` with ``PYTHONPATH`` set to each tree, prediction
log and metrics on) run side by side on the benchmark's logistic regression; rounds of ``wrk``
(c=16, 3 s) alternate between them (ABBA order), so a busy neighbour slows both alike. Besides
req/s it reports the server's CPU time per request (user + system, from /proc), which a shared
machine disturbs far less than throughput: on 2 busy cores it is the number to compare.
"""

from __future__ import annotations

import argparse
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_models import N_FEATURES, fitted_models, training_data  # noqa: E402


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_src", type=Path, help="the src folder of the tree to compare with")
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=8)
    args = parser.parse_args()
    from modelyard.flavors import save_model

    root = Path(tempfile.mkdtemp(prefix="modelyard-ab-"))
    x, _ = training_data()
    save_model(fitted_models()["lr"], root / "model", input_example=x[:5])
    trees = {"base": args.base_src.resolve(), "this": HERE.parent.parent / "src"}
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    for name, src in trees.items():
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        with (root / f"{name}.log").open("wb") as out:
            servers[name] = (
                subprocess.Popen(
                    [
                        sys.executable,
                        "-m",
                        "modelyard.serving",
                        "--model-dir",
                        str(root / "model"),
                        "--name",
                        "lr",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        str(port),
                        "--log-dir",
                        str(root / f"log-{name}"),
                        "--log-level",
                        "warning",
                    ],
                    env=dict(os.environ, PYTHONPATH=str(src)),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                ),  # fmt: skip
                port,
            )
    try:
        for proc, port in servers.values():
            deadline = time.monotonic() + 180
            while True:
                try:
                    socket.create_connection(("127.0.0.1", port)).close()
                    break
                except OSError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"a server did not start; see {root}") from None
                    time.sleep(0.1)  # polling a process we do not control
        row = "[" + ",".join(["0.5"] * N_FEATURES) + "]"
        lua = root / "body.lua"
        lua.write_text(
            'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
            'wrk.body = \'{"instances": [' + ",".join([row] * args.rows) + "]}'\n"
        )
        rps: dict[str, list[float]] = {name: [] for name in servers}
        cpu: dict[str, list[float]] = {name: [] for name in servers}
        print(f"{args.rows} row(s), c=16; load average before {os.getloadavg()}", flush=True)
        for r in range(args.rounds):
            for name in ("base", "this") if r % 2 == 0 else ("this", "base"):
                proc, port = servers[name]
                before = _cpu_seconds(proc.pid)
                out = subprocess.run(
                    ["wrk", "-t", "1", "-c", "16", "-d", "3s", "-s", str(lua),
                     f"http://127.0.0.1:{port}/invocations"],
                    capture_output=True, text=True, check=True,
                ).stdout  # fmt: skip
                if "Non-2xx" in out:
                    raise SystemExit(f"non-2xx answers from {name}:\n{out}")
                done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
                rps[name].append(float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)))  # type: ignore[union-attr]
                cpu[name].append((_cpu_seconds(proc.pid) - before) / done * 1e6)
        for name in servers:
            print(
                f"{name:5} req/s median {statistics.median(rps[name]):7.0f}  "
                f"CPU per request median {statistics.median(cpu[name]):5.0f} us  "
                f"(rounds: {', '.join(f'{v:.0f}' for v in rps[name])})"
            )
        ratio = statistics.median(cpu["this"]) / statistics.median(cpu["base"])
        print(f"this/base CPU per request: {ratio:.2f}; load average after {os.getloadavg()}")
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(60)


if __name__ == "__main__":
    main()
