"""Benchmark ``modelyard data add`` on a large CSV: throughput and peak memory.

    python benchmarks/dataset_add.py [--size-mb 1024] [--keep]

Generates a CSV of realistic columns (ids, floats with missing values, skewed categories,
booleans, timestamps) in a temporary workspace, then runs ``modelyard data add`` in a child
process and reports wall time, MB/s and the child's peak RSS (``ru_maxrss`` of the child alone:
an intermediate process waits for it, so nothing else this process ran is counted).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_CHILD = """
import json, resource, subprocess, sys, time
t0 = time.perf_counter()
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
elapsed = time.perf_counter() - t0
peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
print(json.dumps({"rc": proc.returncode, "seconds": elapsed, "peak_rss_mb": peak_kb / 1024,
                  "stdout": proc.stdout, "stderr": proc.stderr[-2000:]}))
"""


def measure(argv: list[str], cwd: Path) -> dict[str, object]:
    """Run ``argv`` and return its exit code, wall time and own peak RSS (MB)."""
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, *argv], cwd=cwd, capture_output=True, text=True, check=True
    )
    result: dict[str, object] = json.loads(out.stdout)
    return result


def write_csv(path: Path, size_mb: int, seed: int = 7) -> int:
    """Write about ``size_mb`` MB of CSV; returns the row count."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv

    rng = np.random.default_rng(seed)
    cities = np.array(["Paris", "Berlin", "Madrid", "Rome", "Lisbon", "Vienna", "Prague", "Oslo"])
    plans = np.array(["free", "basic", "pro", "enterprise"])
    rows, chunk = 0, 200_000
    target = size_mb * 1_000_000
    with pcsv.CSVWriter(
        path,
        pa.schema(
            [
                ("customer_id", pa.int64()),
                ("age", pa.int64()),
                ("monthly_spend", pa.float64()),
                ("tenure_months", pa.float64()),
                ("city", pa.string()),
                ("plan", pa.string()),
                ("churned", pa.bool_()),
                ("signup", pa.timestamp("s")),
            ]
        ),
    ) as writer:
        while path.stat().st_size < target:
            spend = rng.lognormal(3.5, 0.8, chunk).round(2)
            tenure = rng.gamma(2.0, 12.0, chunk).round(1)
            tenure_mask = rng.random(chunk) < 0.03
            writer.write_table(
                pa.table(
                    {
                        "customer_id": np.arange(rows, rows + chunk),
                        "age": rng.integers(18, 90, chunk),
                        "monthly_spend": spend,
                        "tenure_months": pa.array(tenure, mask=tenure_mask),
                        "city": cities[rng.zipf(1.6, chunk) % len(cities)],
                        "plan": plans[rng.integers(0, len(plans), chunk)],
                        "churned": rng.random(chunk) < 0.2,
                        "signup": pa.array(
                            rng.integers(1_500_000_000, 1_700_000_000, chunk), pa.timestamp("s")
                        ),
                    }
                )
            )
            rows += chunk
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="CSV size to generate")
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspace")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="modelyard-bench-"))
    try:
        ws = root / "ws"
        subprocess.run(
            [sys.executable, "-m", "modelyard.cli.main", "init", str(ws)],
            check=False,
            capture_output=True,
        )
        if not (ws / "modelyard.toml").exists():
            from modelyard.workspace import Workspace

            Workspace.init(ws, environ={})[0].close()
        csv = root / "customers.csv"
        t0 = time.perf_counter()
        rows = write_csv(csv, args.size_mb)
        size = csv.stat().st_size
        print(
            f"generated {csv.name}: {size / 1e6:.0f} MB, {rows} rows "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        cli = "from modelyard.cli.main import main; main()"
        result = measure(
            [sys.executable, "-c", cli, "data", "add", str(csv), "--name", "customers"], ws
        )
        if result["rc"] != 0:
            print(result["stdout"], result["stderr"], file=sys.stderr)
            return 1
        seconds = float(str(result["seconds"]))
        print(str(result["stdout"]).strip())
        print(
            f"data add: {seconds:.1f} s, {size / 1e6 / seconds:.1f} MB/s "
            f"(hash + copy + profile), peak RSS {float(str(result['peak_rss_mb'])):.0f} MB"
        )
        return 0
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
