"""Local runner overhead: a 10-step chain of empty steps, run once (every step a subprocess and
a tracked run) and again (every step cached).

    python benchmarks/pipeline_overhead.py [--steps 10]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def chain_source(n: int) -> str:
    lines = ["from modelyard.pipeline import Pipeline, step", ""]
    for i in range(n):
        arg = f"s{i - 1}: int" if i else ""
        body = f"s{i - 1} + 1" if i else "0"
        lines += ["@step", f"def s{i}({arg}) -> int:", f"    return {body}", ""]
    lines.append(f"pipeline = Pipeline('bench', [{', '.join(f's{i}' for i in range(n))}])")
    return "\n".join(lines) + "\n"


def main() -> None:
    from modelyard.pipeline.run import run_pipeline
    from modelyard.workspace import Workspace

    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="modelyard-bench-"))
    try:
        ws, _ = Workspace.init(root, environ={})
        path = root / "bench.py"
        path.write_text(chain_source(args.steps))
        started = time.perf_counter()
        first = run_pipeline(path, workspace=ws)
        cold = time.perf_counter() - started
        assert first.status == "finished", first.error
        started = time.perf_counter()
        again = run_pipeline(path, workspace=ws)
        cached = time.perf_counter() - started
        assert all(s.status == "cached" for s in again.steps)
        print(f"{args.steps}-step chain of empty steps, local runner, SQLite store")
        print(f"  first run : {cold:6.2f} s  ({cold / args.steps * 1000:.0f} ms per step)")
        print(f"  cached run: {cached:6.2f} s  (all {args.steps} steps cached)")
        ws.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
