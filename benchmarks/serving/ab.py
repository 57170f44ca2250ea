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
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_models import N_FEATURES  # noqa: E402
from modelserver import (  # noqa: E402
    cpu_seconds,
    free_port,
    post_lua,
    save_lr,
    start_model_server,
    stop,
    wrk,
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("base_src", type=Path, help="the src folder of the tree to compare with")
    parser.add_argument("--rows", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0, help="per wrk round")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="modelyard-ab-"))
    model = save_lr(root / "model")
    trees = {"base": args.base_src.resolve(), "this": HERE.parent.parent / "src"}
    servers: dict[str, tuple[subprocess.Popen[bytes], int]] = {}
    try:
        for name, src in trees.items():
            port = free_port()
            proc = start_model_server(
                model, port, root / f"log-{name}", root / f"{name}.log", src=src
            )
            servers[name] = (proc, port)
        row = "[" + ",".join(["0.5"] * N_FEATURES) + "]"
        lua = post_lua(
            root / "body.lua", ('{"instances": [' + ",".join([row] * args.rows) + "]}").encode()
        )
        rps: dict[str, list[float]] = {name: [] for name in servers}
        cpu: dict[str, list[float]] = {name: [] for name in servers}
        print(
            f"{args.rows} row(s), c={args.connections}; load average before {os.getloadavg()}",
            flush=True,
        )
        for r in range(args.rounds):
            for name in ("base", "this") if r % 2 == 0 else ("this", "base"):
                proc, port = servers[name]
                before = cpu_seconds(proc.pid)
                url = f"http://127.0.0.1:{port}/invocations"
                done, per_second, _ = wrk(url, lua, args.connections, args.seconds)
                rps[name].append(per_second)
                cpu[name].append((cpu_seconds(proc.pid) - before) / done * 1e6)
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
            stop(proc)


if __name__ == "__main__":
    main()
