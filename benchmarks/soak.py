"""Soak: N clients for M minutes against a model server with the prediction log on.

    .venv/bin/python benchmarks/soak.py [--clients 8] [--minutes 10] [--fraction 0.5]

Starts ``python -m modelyard.serving`` on the benchmark's logistic regression (prediction log
and metrics on), measures its maximum rate (all clients as fast as they can, ``--probe``
seconds), then paces the clients to ``--fraction`` of it for ``--minutes``. Clients are plain
keep-alive sockets sending one prebuilt MLflow request each time (cheap, so they leave the CPU
to the server), each with its own ``X-Request-ID``. Prints per-minute rate, 5xx and p99, the
server's RSS and open file descriptors (its whole process tree) after ``--warm-up`` and at the
end, and, after a graceful stop, the logged predictions against the 2xx answers (the same set
of request ids, not only the same count). Exits 1 if a target is missed: 0 5xx, logged == 2xx,
RSS growth after warm-up under 5 %.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "serving"))

from bench_models import N_FEATURES  # noqa: E402
from modelserver import free_port, save_lr, start_model_server, tree_usage  # noqa: E402
from modelserver import stop as stop_server  # noqa: E402

BODY = ('{"instances": [[' + ", ".join(["0.25"] * N_FEATURES) + "]]}").encode()


class Client(threading.Thread):
    """One keep-alive connection; ``interval`` 0 sends as fast as answers come back."""

    def __init__(self, index: int, port: int, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.index = index
        self.port = port
        self.stop = stop
        self.interval = 0.0
        self.ok: list[str] = []
        self.statuses: dict[int, int] = {}
        self.errors = 0
        self.samples: list[tuple[float, float]] = []  # (when, latency s)

    def run(self) -> None:
        sock = socket.create_connection(("127.0.0.1", self.port))
        reader = sock.makefile("rb")
        n = 0
        next_at = time.monotonic()
        try:
            while not self.stop.is_set():
                if self.interval:
                    next_at += self.interval
                    delay = next_at - time.monotonic()
                    if delay > 0:
                        self.stop.wait(delay)  # pacing the client, not synchronising a test
                        if self.stop.is_set():
                            break
                rid = f"s{self.index}-{n}"
                n += 1
                started = time.monotonic()
                sock.sendall(
                    b"POST /invocations HTTP/1.1\r\nhost: 127.0.0.1\r\n"
                    b"content-type: application/json\r\n"
                    + f"x-request-id: {rid}\r\ncontent-length: {len(BODY)}\r\n\r\n".encode()
                    + BODY
                )
                status = int(reader.readline().split()[1])
                length = 0
                while (line := reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                reader.read(length)
                done = time.monotonic()
                self.samples.append((done, done - started))
                self.statuses[status] = self.statuses.get(status, 0) + 1
                if 200 <= status < 300:
                    self.ok.append(rid)
        except (OSError, ValueError, IndexError):
            self.errors += 1
        finally:
            reader.close()
            sock.close()


def _run(clients: list[Client], seconds: float, stop: threading.Event) -> None:
    for c in clients:
        c.start()
    stop.wait(seconds)
    stop.set()
    for c in clients:
        c.join(30)


def _p99(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100)[98] * 1000 if len(latencies) > 1 else 0.0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--fraction", type=float, default=0.5, help="of the maximum rate")
    parser.add_argument("--probe", type=float, default=15.0, help="seconds to find the maximum")
    parser.add_argument("--warm-up", type=float, default=60.0, help="seconds before RSS baseline")
    args = parser.parse_args()

    from modelyard.serving import read_predictions

    root = Path(tempfile.mkdtemp(prefix="modelyard-soak-"))
    port = free_port()
    log = root / "server.log"
    server = start_model_server(save_lr(root / "model"), port, root / "predlog", log)
    try:
        print(f"load average before: {os.getloadavg()}; server log: {log}", flush=True)

        stop = threading.Event()
        probe = [Client(i, port, stop) for i in range(args.clients)]
        _run(probe, args.probe, stop)
        served = sum(len(c.ok) for c in probe)
        maximum = served / args.probe
        rate = maximum * args.fraction
        print(f"maximum: {maximum:.0f} req/s ({args.clients} clients, {args.probe:.0f} s)")
        print(f"soak: {rate:.0f} req/s for {args.minutes:g} min", flush=True)

        stop = threading.Event()
        soak = [Client(args.clients + i, port, stop) for i in range(args.clients)]
        for c in soak:
            c.interval = args.clients / rate
        start = time.monotonic()
        rss0, fds0 = tree_usage(server.pid)
        runner = threading.Thread(target=_run, args=(soak, args.minutes * 60, stop))
        runner.start()
        stop.wait(args.warm_up)
        rss1, fds1 = tree_usage(server.pid)
        minute = 1
        while runner.is_alive():
            runner.join(max(0.0, start + minute * 60 - time.monotonic()))
            window = [
                lat
                for c in soak
                for when, lat in c.samples
                if start + (minute - 1) * 60 <= when < start + minute * 60
            ]
            span = min(60.0, args.minutes * 60 - (minute - 1) * 60)
            if window and span > 0:  # answers that land just after the last minute: none
                print(
                    f"  minute {minute:3}: {len(window) / span:6.0f} req/s  "
                    f"p99 {_p99(window):6.1f} ms  load {os.getloadavg()[0]:.2f}",
                    flush=True,
                )
            minute += 1
        rss2, fds2 = tree_usage(server.pid)
    finally:
        stop_server(server)

    statuses: dict[int, int] = {}
    for c in soak:
        for status, n in c.statuses.items():
            statuses[status] = statuses.get(status, 0) + n
    ok = {rid for c in soak for rid in c.ok} | {rid for c in probe for rid in c.ok}
    logged = read_predictions(root / "predlog").column("request_id").to_pylist()
    fivexx = sum(n for s, n in statuses.items() if s >= 500)
    latencies = [lat for c in soak for _, lat in c.samples]
    growth = (rss2 - rss1) / rss1 * 100
    print(f"requests: {sum(statuses.values())}  statuses: {dict(sorted(statuses.items()))}")
    print(f"client errors: {sum(c.errors for c in soak)}  5xx: {fivexx}")
    print(f"latency p50 {statistics.median(latencies) * 1000:.1f} ms  p99 {_p99(latencies):.1f} ms")
    print(
        f"RSS MiB: start {rss0 / 2**20:.0f}, after {args.warm_up:.0f} s {rss1 / 2**20:.0f}, "
        f"end {rss2 / 2**20:.0f} ({growth:+.1f} % after warm-up)"
    )
    print(f"open fds: start {fds0}, after warm-up {fds1}, end {fds2}")
    print(
        f"logged {len(logged)} vs 2xx {len(ok)} (probe + soak): "
        f"{'the same request ids' if set(logged) == ok and len(logged) == len(ok) else 'DIFFER'}"
    )
    print(f"load average after: {os.getloadavg()}")
    met = fivexx == 0 and set(logged) == ok and len(logged) == len(ok) and growth < 5
    print("targets met" if met else "TARGET MISSED")
    return 0 if met else 1


if __name__ == "__main__":
    raise SystemExit(main())
