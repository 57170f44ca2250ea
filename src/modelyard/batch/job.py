"""``predict``: score a dataset version with a model version into a new dataset version.

    resolve   the model version (exported and verified like ``serve``) and the input version
    check     the table's columns and types against the signature, and that it has rows —
              before anything is written
    score     chunks of ``batch_rows`` rows streamed from the verified blobs, scored by an
              engine (this process, or a Ray cluster), written to a Parquet file in a private
              temporary folder of the workspace
    record    that file is added as the next version of ``output`` (profiled like any dataset),
              with a tracked run: input dataset + model version → run → output dataset
    monitor   drift of the batch against the training data, an HTML report, and the monitor
              policies of the deployments serving the model

The output version exists only once every row is scored: an error or a killed process leaves
no version (and the temporary folder of a killed job is removed by the next job). Running the
same job again on the same input gives the same content, hence the same version.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import DataError, InvalidParameter
from modelyard.refs import validate_name

if TYPE_CHECKING:
    from modelyard.batch.monitor import BatchDrift
    from modelyard.monitor.check import CheckResult
    from modelyard.store import DatasetVersion
    from modelyard.store.models_entities import ModelVersion
    from modelyard.workspace import Workspace

DEFAULT_BATCH_ROWS = 65_536
MAX_BATCH_ROWS = 4_000_000
TMP_DIR = "tmp"
_PREFIX = "predict-"

BatchProgress = Callable[[int, int], None]
"""``progress(rows_done, rows_total)``, called after each chunk."""


@dataclass(frozen=True)
class BatchResult:
    output: DatasetVersion
    model: ModelVersion
    input: DatasetVersion
    run_id: str
    rows: int
    seconds: float  # scoring: from the loaded model to the last row written
    cpu_seconds: float  # CPU time of this process (all its threads) over those seconds
    drift: BatchDrift
    checks: tuple[CheckResult, ...] = ()  # monitor passes of the deployments serving the model
    report: Path | None = None

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0


def predict(
    model: str,
    data: str,
    *,
    output: str,
    columns: Sequence[str] = (),
    batch_rows: int = DEFAULT_BATCH_ROWS,
    engine: str = "local",
    address: str | None = None,
    workers: int | None = None,
    monitor: bool = True,
    report: str | Path | None = None,
    workspace: Workspace | None = None,
    progress: BatchProgress | None = None,
) -> BatchResult:
    """Score dataset version ``data`` (``sensors@4``) with model ``model``
    (``maintenance@production``) into the next version of dataset ``output``.

    ``columns`` are input columns copied into the output beside ``row_id``, ``prediction`` and
    the ``proba_<class>`` columns. ``monitor=False`` skips the deployments' policies (drift is
    still measured and recorded on the run). ``report`` also writes the batch's HTML drift
    report there.
    """
    from modelyard.batch.engines import engine as pick_engine
    from modelyard.data.resolve import using_workspace

    validate_name(output, "output dataset name")
    if isinstance(batch_rows, bool) or not 1 <= batch_rows <= MAX_BATCH_ROWS:
        raise InvalidParameter(f"batch rows must be between 1 and {MAX_BATCH_ROWS}")
    if workers is not None and workers < 1:
        raise InvalidParameter("workers must be at least 1")
    score = pick_engine(engine, address=address, workers=workers)
    with using_workspace(workspace) as ws:
        job = _Job(ws, model, data, output, tuple(columns), batch_rows)
        return job.run(score, engine=engine, monitor=monitor, report=report, progress=progress)


class _Job:
    def __init__(
        self,
        ws: Workspace,
        model_ref: str,
        data_ref: str,
        output: str,
        carry: tuple[str, ...],
        batch_rows: int,
    ) -> None:
        from modelyard.batch.engines import ScoringJob
        from modelyard.data.checkout import tabular_sources
        from modelyard.data.formats import read_schema, recorded_schema
        from modelyard.data.resolve import resolve as resolve_dataset
        from modelyard.flavors import read_meta
        from modelyard.models import resolve
        from modelyard.models.serve import export_model
        from modelyard.models.trust import check_code_trust
        from modelyard.serving.batch import check_schema

        self.ws = ws
        self.output = output
        # Exported and verified like a served version (but no prediction-log folder: a batch
        # is not served traffic, and the monitor looks for served traffic there).
        self.version = resolve(model_ref, ws)
        check_code_trust(self.version)  # a pickle or Python model runs only if an admin said so
        model_dir = export_model(ws, self.version)
        self.input = resolve_dataset(data_ref, ws)
        sources = tabular_sources(self.input, ws)
        recorded = (self.input.schema or {}).get("columns")
        schema = recorded_schema(recorded) if recorded else read_schema(sources[0])
        self.rows = int((self.input.profile or {}).get("row_count") or 0)
        check_schema(read_meta(model_dir).signature, schema, carry)
        if self.rows == 0:
            raise DataError(f"dataset {self.input.ref} has no rows: there is nothing to score")
        self.carry = carry
        self.batch_rows = batch_rows
        self.scoring = ScoringJob(
            model_dir=model_dir,
            allow_pickle=self.version.code_trusted,  # the registry's trust, never the files
            sources=tuple(sources),
            schema=schema,
            carry=carry,
            batch_rows=batch_rows,
        )

    def params(self, engine: str) -> dict[str, Any]:
        return {
            "model": self.version.ref,
            "input": self.input.ref,
            "output": self.output,
            "columns": ",".join(self.carry),
            "batch_rows": self.batch_rows,
            "engine": engine,
        }

    def run(
        self,
        score: Any,
        *,
        engine: str,
        monitor: bool,
        report: str | Path | None,
        progress: BatchProgress | None,
    ) -> BatchResult:
        from modelyard.batch.monitor import batch_drift, feed_policies, write_report
        from modelyard.data.add import add
        from modelyard.pipeline.context import current_run
        from modelyard.tracking import start_run

        ws = self.ws
        step = current_run()
        parent = getattr(step, "run_id", None)
        with (
            _scratch(ws) as scratch,
            start_run(
                name=f"predict {self.output}",
                params=self.params(engine),
                parent_id=parent,
                workspace=ws,
            ) as run,
        ):
            run.use_dataset(self.input.ref)
            ws.store.lineage.add("model_version", self.version.ref, "run", run.id, "input")
            target = scratch / f"{self.output}.parquet"
            with score(self.scoring) as batches:  # the model is loaded: the clock starts
                started, cpu_started = time.perf_counter(), time.process_time()
                rows = _write(batches, target, self.rows, progress)
                seconds = time.perf_counter() - started
                cpu_seconds = time.process_time() - cpu_started
            added = add(
                target,
                name=self.output,
                description=f"{self.version.ref} on {self.input.ref}",
                workspace=ws,
            ).version
            run.add_output("dataset_version", added.ref)
            run.log_metrics(
                {
                    "rows": rows,
                    "seconds": seconds,
                    "rows_per_s": rows / seconds,
                    "cpu_seconds": cpu_seconds,
                }
            )
            drift = batch_drift(ws, self.version, self.input)
            if drift.report is not None:
                run.log_metrics({k: v for k, v in drift.metrics.items() if v is not None})
                html = write_report(
                    drift, scratch / "batch-report.html", title=f"modelyard batch: {added.ref}"
                )
                run.log_artifact(html, "batch-report.html")
                if report is not None:
                    shutil.copyfile(html, report)
            else:
                run.set_tag("drift_unavailable", drift.unavailable or "")
            checks = (
                feed_policies(ws, self.version, drift, rows=rows, output=added.ref)
                if monitor
                else []
            )
        return BatchResult(
            output=added,
            model=self.version,
            input=self.input,
            run_id=run.id,
            rows=rows,
            seconds=seconds,
            cpu_seconds=cpu_seconds,
            drift=drift,
            checks=tuple(checks),
            report=Path(report) if report is not None and drift.report is not None else None,
        )


def _write(batches: Any, target: Path, total: int, progress: BatchProgress | None) -> int:
    """Write ``batches`` into ``target`` from a writer thread (encoding overlaps scoring)."""
    from modelyard.serving.batch import BatchWriter

    with BatchWriter(target) as writer:
        for batch in batches:
            writer.write(batch)
            if progress is not None:
                progress(writer.rows, total)
    if writer.rows != total:
        raise DataError(f"scored {writer.rows} rows, but the input has {total}")
    return writer.rows


@contextlib.contextmanager
def _scratch(ws: Workspace) -> Any:
    """A private folder for one job's output before it becomes a dataset version; folders of
    jobs whose process is gone (killed) are removed first."""
    from modelyard.processes import pid_alive

    root = ws.state_dir / TMP_DIR
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(f"{_PREFIX}*"):
        pid = stale.name.removeprefix(_PREFIX).partition("-")[0]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    folder = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-", dir=root))
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
