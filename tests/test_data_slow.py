"""Memory stays flat: big files are added in a child process whose own peak RSS is measured.

An intermediate Python process runs the child and reports ``RUSAGE_CHILDREN.ru_maxrss``, so the
number covers that child alone, not every process this test session ever waited for.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from modelyard.workspace import Workspace

LIMIT_MB = 200
_MEASURE = """
import json, resource, subprocess, sys
proc = subprocess.run(sys.argv[1:], capture_output=True, text=True)
print(json.dumps({"rc": proc.returncode, "out": proc.stdout, "err": proc.stderr[-2000:],
                  "peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))
"""
_CLI = "from modelyard.cli.main import main; main()"


def _add_in_child(ws: Workspace, path: Path, name: str) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if k != "MODELYARD_STORE_URL"}
    argv = [sys.executable, "-c", _CLI, "data", "add", str(path), "--name", name]
    done = subprocess.run(
        [sys.executable, "-c", _MEASURE, *argv],
        cwd=ws.root,
        env=env,
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    result: dict[str, object] = json.loads(done.stdout)
    assert result["rc"] == 0, result["err"]
    return result


@pytest.mark.slow
def test_two_gigabyte_file_adds_with_flat_memory(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    big = tmp_path / "big.bin"
    size = 2 * 1024**3
    with big.open("wb") as f:
        f.truncate(size)  # sparse: no disk space until the artifact store copies it
    try:
        result = _add_in_child(sqlite_workspace, big, "big")
        assert str(result["out"]).startswith("Added big@1 (sha256:")
        from modelyard.data import show

        v = show("big", workspace=sqlite_workspace)
        assert (v.size, v.format, v.profile) == (size, "binary", None)
        assert sqlite_workspace.artifacts.path(v.digest).stat().st_size == size
        assert float(str(result["peak_mb"])) < LIMIT_MB, result
    finally:
        big.unlink(missing_ok=True)
        shutil.rmtree(sqlite_workspace.artifacts.root, ignore_errors=True)


def _write_csv(path: Path, target_bytes: int) -> int:
    import numpy as np
    import pyarrow as pa
    import pyarrow.csv as pcsv

    rng = np.random.default_rng(1)
    cities = np.array(["Paris", "Berlin", "Rome", "Oslo", "Lisbon"])
    rows, chunk = 0, 100_000
    schema = pa.schema([("id", pa.int64()), ("x", pa.float64()), ("city", pa.string())])
    with pcsv.CSVWriter(path, schema) as writer:
        while path.stat().st_size < target_bytes:
            writer.write_table(
                pa.table(
                    {
                        "id": np.arange(rows, rows + chunk),
                        "x": rng.normal(50.0, 10.0, chunk),
                        "city": cities[rng.integers(0, len(cities), chunk)],
                    },
                    schema=schema,
                )
            )
            rows += chunk
    return rows


@pytest.mark.slow
def test_profiling_a_100mb_csv_keeps_memory_bounded(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    csv = tmp_path / "big.csv"
    rows = _write_csv(csv, 100 * 1000**2)
    try:
        result = _add_in_child(sqlite_workspace, csv, "bigcsv")
        from modelyard.data import show

        profile = show("bigcsv", workspace=sqlite_workspace).profile
        assert profile is not None
        assert profile["row_count"] == rows
        assert profile["sample_rows"] == 10_000
        x = next(c for c in profile["columns"] if c["name"] == "x")
        assert x["mean"] == pytest.approx(50.0, abs=0.1)
        assert x["std"] == pytest.approx(10.0, abs=0.1)
        assert float(str(result["peak_mb"])) < LIMIT_MB, result
    finally:
        csv.unlink(missing_ok=True)
        shutil.rmtree(sqlite_workspace.artifacts.root, ignore_errors=True)
