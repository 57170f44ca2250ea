"""What a shadow costs the serving version: production p99 at c=16 with and without mirroring.

    .venv/bin/python benchmarks/serving/shadow.py [--rounds 6] [--duration 3] [--sample 1.0]

One ``local`` deployment of the benchmark's logistic regression (one gunicorn worker, the
prediction log and metrics on) with a candidate of a second version beside it; rounds of
``wrk -c 16`` against ``/invocations`` alternate between no split and a shadow split copying
``--sample`` of the requests to the candidate. Same server process for both, so the only
difference is the mirroring; the candidate runs on the same (small) machine, so its CPU is
part of the cost measured. Prints the median p50/p99 and req/s of each mode, the p99 overhead
and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--duration", type=int, default=3)
    parser.add_argument("--sample", type=float, default=1.0)
    args = parser.parse_args()

    from bench_models import fitted_models, training_data
    from run import _wrk

    from modelyard import deploy, models
    from modelyard.deploy import service
    from modelyard.deploy.probe import free_port
    from modelyard.deploy.target import TrafficSplit
    from modelyard.tracking import start_run
    from modelyard.workspace import Workspace

    for var in ("MODELYARD_STORE_URL", "MODELYARD_ARTIFACT_ROOT", "MODELYARD_WORKSPACE"):
        os.environ.pop(var, None)
    with tempfile.TemporaryDirectory(prefix="modelyard-shadow-bench-") as tmp:
        ws, _ = Workspace.init(Path(tmp) / "ws", environ={})
        lr = fitted_models()["lr"]
        refs = []
        for _ in range(2):
            with start_run("bench", workspace=ws) as run:
                run.log_model(lr, "model", input_example=training_data()[0][:5])
            refs.append(models.register(run.id, "bench", workspace=ws).ref)
        port = free_port()
        deploy.deploy(deploy.DeploySpec(refs[0], "bench", target="local", port=port), workspace=ws)
        try:
            spec = deploy.DeploySpec(refs[1], "bench", target="local", port=port,
                                     strategy="shadow")  # fmt: skip
            service.start_candidate(ws, spec)
            lua = Path(tmp) / "bench.lua"
            results: dict[str, list[tuple[float, float, float]]] = {"off": [], "shadow": []}
            for _ in range(args.rounds):
                for mode in ("off", "shadow"):
                    split = TrafficSplit("shadow", args.sample * 100) if mode == "shadow" else None
                    service.set_split(ws, "bench", split)
                    _wrk(port, 1, 16, 1, lua)  # settle: the workers re-read the split file
                    results[mode].append(_wrk(port, 1, 16, args.duration, lua))
            service.stop_candidate(ws, "bench", "benchmark done")
        finally:
            deploy.stop("bench", workspace=ws)
            ws.close()
    load = Path("/proc/loadavg").read_text().split()[:3]
    print(f"shadow overhead, c=16, 1 row, sample {args.sample:g}, {args.rounds} rounds of "
          f"{args.duration} s, load average {' '.join(load)}")  # fmt: skip
    medians = {}
    for mode, rows in results.items():
        rps, p50, p99 = (statistics.median(r[i] for r in rows) for i in range(3))
        medians[mode] = p99
        print(f"  {mode:7s} {rps:8.0f} req/s   p50 {p50:7.2f} ms   p99 {p99:7.2f} ms")
    overhead = medians["shadow"] / medians["off"] - 1
    print(f"  p99 overhead of mirroring: {overhead:+.1%} (target <= +10 %)")


if __name__ == "__main__":
    main()
