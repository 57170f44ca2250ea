"""Drift over 1,000,000 rows × 30 features against a 100,000-row reference: modelyard vs
Evidently's DataDriftPreset on the same data, in the same run.

    .venv/bin/python benchmarks/drift.py [--rows 1000000] [--reference 100000]

Both sides run in a fresh subprocess (so peak RSS is theirs alone) and read the same Parquet
files. modelyard reads the window one column at a time (a lazy mapping), so its memory is one
column (8 MB per million rows) plus the reference, not the 240 MB window. Evidently runs from
/tmp/evidently-venv (``python3 -m venv /tmp/evidently-venv && /tmp/evidently-venv/bin/pip
install evidently``); without it that column is skipped.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

FEATURES = 30
SHIFTED = ("f0", "f1", "f2")
EVIDENTLY_PYTHON = Path("/tmp/evidently-venv/bin/python")

EVIDENTLY_SCRIPT = """
import json, resource, sys, time
t0 = time.perf_counter()
import pandas as pd
from evidently import Report
from evidently.presets import DataDriftPreset
ref = pd.read_parquet(sys.argv[1]); cur = pd.read_parquet(sys.argv[2])
t1, c1 = time.perf_counter(), time.process_time()
snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
result = snapshot.dict()
t2, c2 = time.perf_counter(), time.process_time()
drifted = None
for m in result.get("metrics", []):
    if "DriftedColumnsCount" in str(m.get("metric_name", m.get("metric_id", ""))):
        drifted = m.get("value")
print(json.dumps({"seconds": t2 - t1, "cpu_seconds": c2 - c1, "total_seconds": t2 - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "drifted": drifted}, default=str))
"""


def make_data(folder: Path, rows: int, reference_rows: int) -> tuple[Path, Path]:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    names = [f"f{i}" for i in range(FEATURES)]
    ref_path, cur_path = folder / "reference.parquet", folder / "current.parquet"
    rng = np.random.default_rng(0)
    pq.write_table(pa.table({n: rng.normal(size=reference_rows) for n in names}), ref_path)
    with pq.ParquetWriter(cur_path, pa.schema([(n, pa.float64()) for n in names])) as writer:
        for start in range(0, rows, 100_000):
            n = min(100_000, rows - start)
            writer.write_table(
                pa.table({c: rng.normal(0.2 if c in SHIFTED else 0.0, 1.0, n) for c in names})
            )
    return ref_path, cur_path


class ParquetColumns(Mapping[str, Any]):
    """The window as a lazy mapping: a column is read when the detector asks for it."""

    def __init__(self, path: Path) -> None:
        import pyarrow.parquet as pq

        self.path = path
        self.names = pq.read_schema(path).names

    def __getitem__(self, name: str) -> Any:
        import pyarrow.parquet as pq

        return pq.read_table(self.path, columns=[name]).column(0).to_numpy()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)


def run_modelyard(ref_path: Path, cur_path: Path) -> dict[str, Any]:
    import resource

    import pyarrow.parquet as pq
    from scipy import stats  # noqa: F401  (imported before the clock, as Evidently's imports are)

    from modelyard.monitor import Reference, detect_drift

    t0 = time.perf_counter()
    table = pq.read_table(ref_path)
    reference = Reference.from_columns(
        {n: table.column(n).to_numpy() for n in table.column_names}, source="reference"
    )
    del table
    t1, c1 = time.perf_counter(), time.process_time()
    report = detect_drift(reference, ParquetColumns(cur_path))
    t2, c2 = time.perf_counter(), time.process_time()
    return {
        "seconds": t2 - t1,
        "cpu_seconds": c2 - c1,
        "total_seconds": t2 - t0,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "drifted": report.n_drifted,
        "drifted_features": report.drifted_features,
    }


def _subprocess(cmd: list[str]) -> dict[str, Any]:
    out = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        return {"error": out.stderr.strip().splitlines()[-1] if out.stderr else "failed"}
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reference", type=int, default=100_000)
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(run_modelyard(Path(args.child[0]), Path(args.child[1]))))
        return
    with tempfile.TemporaryDirectory() as tmp:
        ref_path, cur_path = make_data(Path(tmp), args.rows, args.reference)
        print(
            f"window {args.rows:,} rows × {FEATURES} features, reference {args.reference:,} "
            f"rows; {len(SHIFTED)} features shifted by 0.2 std"
        )
        print(f"load average: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")
        ours = _subprocess([sys.executable, __file__, "--child", str(ref_path), str(cur_path)])
        print(f"modelyard : {json.dumps(ours)}")
        if EVIDENTLY_PYTHON.exists():
            theirs = _subprocess(
                [str(EVIDENTLY_PYTHON), "-c", EVIDENTLY_SCRIPT, str(ref_path), str(cur_path)]
            )
            print(f"evidently : {json.dumps(theirs)}")
            if "seconds" in ours and "seconds" in theirs:
                print(
                    f"modelyard is {theirs['seconds'] / ours['seconds']:.1f}x faster "
                    f"({theirs['cpu_seconds'] / ours['cpu_seconds']:.1f}x less CPU), "
                    f"{theirs['peak_rss_mb'] / ours['peak_rss_mb']:.1f}x less peak memory"
                )
        else:
            print(f"evidently : skipped ({EVIDENTLY_PYTHON} not found; see the docstring)")
        print(f"load average: {' '.join(Path('/proc/loadavg').read_text().split()[:3])}")


if __name__ == "__main__":
    main()
