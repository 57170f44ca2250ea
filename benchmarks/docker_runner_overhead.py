"""Docker runner overhead: a chain of empty steps, each in a container of its own, against the
same chain on the local runner. The step image is built (or found) first and timed apart, so
the per-step figure is what a container start, the worker and the tracking cost.

    python benchmarks/docker_runner_overhead.py [--steps 5]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

from pipeline_overhead import chain_source


def main() -> None:
    from modelyard.pipeline.run import run_pipeline
    from modelyard.pipeline.runners.docker import DockerRunner
    from modelyard.pipeline.runners.local import LocalRunner
    from modelyard.workspace import Workspace

    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="modelyard-bench-"))
    try:
        ws, _ = Workspace.init(root / "bench", environ={})
        path = ws.root / "bench.py"
        path.write_text(chain_source(args.steps))
        runner = DockerRunner()
        started = time.perf_counter()
        runner.prepare(ws.root, path)
        prepare = time.perf_counter() - started

        timings = {}
        for name, chosen in (("local", LocalRunner()), ("docker", runner)):
            started = time.perf_counter()
            run = run_pipeline(path, workspace=ws, runner=chosen, use_cache=False)
            timings[name] = time.perf_counter() - started
            assert run.status == "finished", run.error
        per_local = timings["local"] / args.steps
        per_docker = timings["docker"] / args.steps
        print(f"{args.steps}-step chain of empty steps, SQLite store, step image {runner.image}")
        print(f"  step image build/lookup: {prepare:6.2f} s")
        print(f"  local runner : {timings['local']:6.2f} s  ({per_local * 1000:.0f} ms per step)")
        print(f"  docker runner: {timings['docker']:6.2f} s  ({per_docker * 1000:.0f} ms per step)")
        print(f"  container overhead per step: {(per_docker - per_local) * 1000:.0f} ms")
        ws.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
