"""Local runner overhead: step start and per-step cost, warm workers against fresh processes.

    python benchmarks/pipeline_overhead.py [--steps 10]

A chain of ``--steps`` steps, each of which only notes the time it started. Run with warm
workers (forked from the local runner's preloaded server, the default) and with a fresh
``python -m modelyard.pipeline.worker`` per step (``warm=False``), in the same run:

- step start: from the runner being asked to execute a step to the step function's first line
  (median over the steps; the first warm step also waits for the server to start, reported
  apart);
- per step: the whole run's wall time over the number of steps (tracked runs, cache records);
- cached re-run: every step a cache hit.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def chain_source(n: int) -> str:
    lines = ["import time", "import pandas", "from modelyard.pipeline import Pipeline, step", ""]
    for i in range(n):
        arg = f"s{i - 1}: dict" if i else ""
        lines += ["@step", f"def s{i}({arg}) -> dict:", "    return {'started': time.time()}", ""]
    lines.append(f"pipeline = Pipeline('bench', [{', '.join(f's{i}' for i in range(n))}])")
    return "\n".join(lines) + "\n"


def main() -> None:
    from modelyard.pipeline.run import run_pipeline
    from modelyard.pipeline.runners.base import Execution
    from modelyard.pipeline.runners.local import LocalRunner
    from modelyard.workspace import Workspace

    class Timed(LocalRunner):
        asked: dict[str, float]

        def execute(self, task_path: Path, *, timeout: float | None, log_path: Path) -> Execution:
            step = json.loads(task_path.read_text())["step"]
            self.asked[step] = time.time()
            return super().execute(task_path, timeout=timeout, log_path=log_path)

    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    results: dict[str, dict[str, Any]] = {}
    print(f"load average before: {Path('/proc/loadavg').read_text().split()[:3]}")
    for label, warm in (("warm workers", True), ("fresh processes", False)):
        root = Path(tempfile.mkdtemp(prefix="modelyard-bench-"))
        try:
            ws, _ = Workspace.init(root, environ={})
            path = root / "bench.py"
            path.write_text(chain_source(args.steps))
            runner = Timed(warm=warm)
            runner.asked = {}
            started = time.perf_counter()
            first = run_pipeline(path, workspace=ws, runner=runner)
            cold = time.perf_counter() - started
            assert first.status == "finished", first.error
            starts = []
            for s in first.steps:
                doc = (s.outputs or {})[s.step]
                began = json.loads(ws.artifacts.get_bytes(doc["digest"]))["started"]
                starts.append((began - runner.asked[s.step]) * 1000)
            started = time.perf_counter()
            again = run_pipeline(path, workspace=ws)
            cached = time.perf_counter() - started
            assert all(s.status == "cached" for s in again.steps)
            results[label] = {
                "first": starts[0],
                "start": statistics.median(starts[1:]),
                "per_step": cold / args.steps * 1000,
                "cached": cached,
            }
            ws.close()
        finally:
            shutil.rmtree(root, ignore_errors=True)
    print(f"{args.steps}-step chain (each step imports pandas), local runner, SQLite store")
    print(f"{'':28}{'warm workers':>14}{'fresh processes':>17}")
    w, f = results["warm workers"], results["fresh processes"]
    print(f"{'step start (median)':28}{w['start']:11.0f} ms{f['start']:14.0f} ms")
    print(f"{'first step start':28}{w['first']:11.0f} ms{f['first']:14.0f} ms")
    print(f"{'per step, whole run':28}{w['per_step']:11.0f} ms{f['per_step']:14.0f} ms")
    print(f"{'cached re-run':28}{w['cached']:12.2f} s{f['cached']:15.2f} s")
    print(f"load average after: {Path('/proc/loadavg').read_text().split()[:3]}")


if __name__ == "__main__":
    main()
