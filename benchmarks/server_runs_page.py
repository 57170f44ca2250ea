"""The dashboard's runs page with 10,000 runs: server time of ``GET /api/v1/ui/runs`` (one page of
50, with params and last metrics), measured in-process through the ASGI app (auth on, a read
token), on SQLite and — if reachable — PostgreSQL. Target: < 300 ms.

    .venv/bin/python benchmarks/server_runs_page.py [--runs 10000] [--pg-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

from modelyard.workspace import Workspace

DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
REPEAT = 15
QUERIES = {
    "newest first": {},
    "page 100 (offset 5000)": {"offset": 5000},
    "status=failed": {"status": "failed"},
    "search 'trial-99'": {"q": "trial-99"},
    "sort by name": {"sort": "name", "order": "asc"},
    "sort by metric loss": {"sort": "metric", "metric": "loss", "order": "asc"},
}


def seed(ws: Workspace, n: int) -> None:
    """Bulk insert through the store's database: runs, 3 params and 3 metrics each."""
    from modelyard.store.tracking_schema import RunMetricRow, RunParamRow, RunRow

    start = datetime.now(UTC) - timedelta(days=30)
    runs, params, metrics = [], [], []
    for i in range(n):
        run_id = uuid.UUID(int=i + 1).hex
        at = start + timedelta(seconds=60 * i)
        runs.append(
            {
                "id": run_id,
                "name": f"trial-{i}",
                "pipeline": "maintenance" if i % 2 else "churn",
                "status": "failed" if i % 10 == 0 else "finished",
                "start_time": at,
                "end_time": at + timedelta(seconds=30),
                "heartbeat_at": at + timedelta(seconds=30),
            }
        )
        for key in ("lr", "depth", "seed"):
            params.append({"run_id": run_id, "key": key, "value": str(i % 7)})
        for key in ("loss", "accuracy", "roc_auc"):
            metrics.append(
                {"run_id": run_id, "key": key, "value": 1 / (i + 2), "step": 0, "timestamp": at}
            )
    db = ws.store.db
    with db.session() as s:
        s.execute(db.insert(RunRow), runs)
        s.execute(db.insert(RunParamRow), params)
        s.execute(db.insert(RunMetricRow), metrics)
    if db.dialect == "postgresql":
        from sqlalchemy import text

        with db.engine.begin() as conn:
            conn.execute(text("ANALYZE"))


def measure(ws: Workspace) -> dict[str, list[float]]:
    import httpx

    from modelyard.server.app import create_app

    _, secret = ws.store.tokens.create("bench", "read")
    app = create_app(ws)
    headers = {"Authorization": f"Bearer {secret}"}

    async def run() -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
            for label, params in QUERIES.items():
                times = []
                for i in range(REPEAT + 1):
                    began = time.perf_counter()
                    response = await client.get(
                        "/api/v1/ui/runs", params={**params, "limit": 50}, headers=headers
                    )
                    elapsed = (time.perf_counter() - began) * 1000
                    assert response.status_code == 200, response.text
                    assert response.json()["items"], label
                    if i:  # the first request warms caches and imports
                        times.append(elapsed)
                out[label] = times
        return out

    return asyncio.run(run())


def bench(label: str, root: Path, store_url: str, n: int) -> None:
    ws, _ = Workspace.init(root, environ={"MODELYARD_STORE_URL": store_url})
    with ws:
        began = time.perf_counter()
        seed(ws, n)
        print(
            f"{label}: seeded {ws.store.runs.count():,} runs in {time.perf_counter() - began:.1f} s"
        )
        for query, times in measure(ws).items():
            times.sort()
            p95 = times[int(0.95 * (len(times) - 1))]
            print(
                f"  {query:<24} median {statistics.median(times):6.1f} ms   "
                f"p95 {p95:6.1f} ms   max {times[-1]:6.1f} ms"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10_000)
    parser.add_argument("--pg-url", default=DEFAULT_PG)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "sqlite" / "db").mkdir(parents=True)
        bench("sqlite", root / "sqlite", f"sqlite:///{root / 'sqlite' / 'db' / 'm.db'}", args.runs)
        import sqlalchemy as sa

        schema = f"bench_{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(
            args.pg_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 3}
        )
        try:
            with admin.connect() as conn:
                conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
        except Exception as exc:  # no PostgreSQL: SQLite only
            print(f"postgresql: skipped ({type(exc).__name__})")
            admin.dispose()
            return
        try:
            url = f"{args.pg_url}?options=-csearch_path%3D{schema}"
            bench("postgresql", root / "pg", url, args.runs)
        finally:
            with admin.connect() as conn:
                conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()


if __name__ == "__main__":
    main()
