"""Benchmark ``modelyard data add`` on a large CSV, side by side with ``dvc add``.

    python benchmarks/dataset_add.py [--size-mb 1024] [--keep] [--no-dvc]

Generates a CSV of realistic columns (ids, floats with missing values, skewed categories,
booleans, timestamps), then, each in a fresh workspace and with the file in the page cache:
``modelyard data add`` (hash, copy and profile), ``modelyard data add --link`` (hash and
profile; the blob shares the file's blocks) and ``dvc add`` (hash and copy into its cache,
DVC from the benchmark's own venv, ``~/.cache/modelyard-bench/dvc-venv``, as
``pipeline_noop.py`` makes it). Each runs in a child process; reported: wall time, MB/s, CPU
time and the child's peak RSS (``ru_maxrss`` of the child alone: an intermediate process waits
for it, so nothing else this process ran is counted).
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
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"rc": proc.returncode, "seconds": elapsed, "peak_rss_mb": usage.ru_maxrss / 1024,
                  "cpu": usage.ru_utime + usage.ru_stime,
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


def _workspace(path: Path) -> Path:
    from modelyard.workspace import Workspace

    Workspace.init(path, environ={})[0].close()
    return path


def _warm(path: Path) -> None:
    """Read the file once so every tool finds it in the page cache."""
    with path.open("rb") as f:
        while f.read(1 << 24):
            pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mb", type=int, default=1024, help="CSV size to generate")
    parser.add_argument("--keep", action="store_true", help="keep the temporary workspace")
    parser.add_argument("--no-dvc", action="store_true", help="skip the dvc add comparison")
    args = parser.parse_args()

    root = Path(tempfile.mkdtemp(prefix="modelyard-bench-"))
    try:
        repo = root / "dvcrepo"  # dvc adds files inside its repository: the CSV lives there
        repo.mkdir()
        csv = repo / "customers.csv"
        t0 = time.perf_counter()
        rows = write_csv(csv, args.size_mb)
        size = csv.stat().st_size
        print(
            f"generated {csv.name}: {size / 1e6:.0f} MB, {rows} rows "
            f"in {time.perf_counter() - t0:.1f} s"
        )
        cli = "from modelyard.cli.main import main; main()"
        runs: list[tuple[str, list[str], Path]] = []
        for label, extra in (("modelyard data add", []), ("modelyard data add --link", ["--link"])):
            ws = _workspace(root / f"ws{len(runs)}")
            argv = [sys.executable, "-c", cli, "data", "add", str(csv), "--name", "customers"]
            runs.append((label, [*argv, *extra], ws))
        if not args.no_dvc:
            sys.path.insert(0, str(Path(__file__).parent))
            from pipeline_noop import ensure_dvc

            dvc = str(ensure_dvc())
            subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=repo, check=True)
            subprocess.run([dvc, "config", "core.analytics", "false"], cwd=repo, check=True)
            runs.append(("dvc add", [dvc, "add", csv.name], repo))
        load = Path("/proc/loadavg").read_text().split()[:3]
        print(f"load average before: {' '.join(load)}")
        for label, argv, cwd in runs:
            _warm(csv)
            result = measure(argv, cwd)
            if result["rc"] != 0:
                print(result["stdout"], result["stderr"], file=sys.stderr)
                return 1
            seconds = float(str(result["seconds"]))
            print(
                f"{label:28} {seconds:6.1f} s {size / 1e6 / seconds:7.1f} MB/s  "
                f"CPU {float(str(result['cpu'])):5.1f} s  "
                f"peak RSS {float(str(result['peak_rss_mb'])):5.0f} MB"
            )
        load = Path("/proc/loadavg").read_text().split()[:3]
        print(f"load average after: {' '.join(load)}")
        return 0
    finally:
        if args.keep:
            print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
