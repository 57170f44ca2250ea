"""Metric logging throughput: points/s from the first ``log_metric`` until ``end()`` returns
(every point stored), for 10k and 100k points, on SQLite and — if reachable — PostgreSQL.

    .venv/bin/python benchmarks/metric_logging.py [--pg-url URL]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path

from modelyard.tracking import start_run
from modelyard.workspace import Workspace

SIZES = (10_000, 100_000)
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def measure(ws: Workspace, points: int) -> float:
    run = start_run(name=f"bench-{points}", workspace=ws)
    began = time.perf_counter()
    for step in range(points):
        run.log_metric("loss", 1.0 / (step + 1))
    run.end()
    elapsed = time.perf_counter() - began
    stored = ws.store.runs.count_metrics([run.id])
    assert stored == points, f"only {stored} of {points} points stored"
    return elapsed


def bench(label: str, root: Path, store_url: str) -> None:
    ws, _ = Workspace.init(root, environ={"MODELYARD_STORE_URL": store_url})
    with ws:
        for points in SIZES:
            elapsed = measure(ws, points)
            print(
                f"{label:<10} {points:>7} points  {elapsed:6.3f} s  "
                f"{points / elapsed:>9,.0f} points/s"
            )


def pg_schema(admin_url: str) -> tuple[str, str] | None:
    import sqlalchemy as sa

    schema = f"bench_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(
        admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
    )
    try:
        with engine.connect() as conn:
            conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    except Exception as exc:  # not reachable: skip the PostgreSQL half
        print(f"postgresql skipped: {type(exc).__name__}")
        return None
    finally:
        engine.dispose()
    return schema, f"{admin_url}?options=-csearch_path%3D{schema}"


def drop_schema(admin_url: str, schema: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg-url", default=DEFAULT_PG, help="PostgreSQL admin URL ('' to skip)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "sqlite").mkdir()
        bench("sqlite", Path(tmp) / "sqlite", f"sqlite:///{tmp}/sqlite/bench.db")
        if args.pg_url:
            made = pg_schema(args.pg_url)
            if made is not None:
                schema, url = made
                try:
                    bench("postgresql", Path(tmp) / "pg", url)
                finally:
                    drop_schema(args.pg_url, schema)


if __name__ == "__main__":
    main()
