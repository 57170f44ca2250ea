"""``modelyard predict``: batch scoring of a dataset version (thin over :mod:`modelyard.batch`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelyard.cli._common import console, err_console, pass_workspace

if TYPE_CHECKING:
    from modelyard.batch import BatchResult
    from modelyard.workspace import Workspace


def _columns(text: str | None) -> list[str]:
    return [c.strip() for c in (text or "").split(",") if c.strip()]


@click.command("predict")
@click.argument("model")
@click.argument("data")
@click.option("--output", "output", required=True, help="Dataset the scores become a version of.")
@click.option("--columns", help="Input columns to copy into the output (comma-separated).")
@click.option("--batch-rows", type=int, default=65_536, show_default=True, help="Rows per chunk.")
@click.option(
    "--engine",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Score in this process, or on a Ray cluster.",
)
@click.option("--address", help="Ray cluster address (default: start a local one).")
@click.option("--workers", type=int, help="Ray: scoring actors (default: one per CPU).")
@click.option(
    "--monitor/--no-monitor",
    default=True,
    show_default=True,
    help="Run the monitor policies of the deployments serving the model on this batch.",
)
@click.option("--report", type=click.Path(dir_okay=False, path_type=Path), help="HTML report.")
@click.option(
    "--target",
    type=click.Choice(["local", "kubernetes"]),
    default="local",
    show_default=True,
    help="kubernetes: render an Indexed Job instead of scoring here.",
)
@click.option("--dry-run", is_flag=True, help="Kubernetes: print the Job, apply nothing.")
@click.option("-o", "fmt", type=click.Choice(["yaml", "json"]), default="yaml", help="Job format.")
@click.option("--namespace", default="default", show_default=True, help="Kubernetes namespace.")
@click.option("--claim", help="Kubernetes: PersistentVolumeClaim holding inputs/ and outputs/.")
@click.option("--shards", type=int, default=1, show_default=True, help="Kubernetes: Job indexes.")
@click.option("--image", help="Kubernetes: image (default: the version's pushed image).")
@pass_workspace
def predict(
    ws: Workspace,
    model: str,
    data: str,
    output: str,
    columns: str | None,
    batch_rows: int,
    engine: str,
    address: str | None,
    workers: int | None,
    monitor: bool,
    report: Path | None,
    target: str,
    dry_run: bool,
    fmt: str,
    namespace: str,
    claim: str | None,
    shards: int,
    image: str | None,
) -> None:
    """Score dataset version DATA with model MODEL into the next version of dataset --output.

    \b
      modelyard predict maintenance@production sensors@4 --output maintenance-scores
      modelyard predict churn@production customers@latest --output churn-scores \\
          --columns customer_id --engine ray --address 10.0.0.5:6379
      modelyard predict churn@production customers@7 --output churn-scores \\
          --target kubernetes --claim batch-data --shards 8 --dry-run -o yaml

    The output holds row_id, the --columns, prediction and proba_<class> per class. DATA is
    checked against the model's signature before anything is written; the output version
    appears only when every row is scored.
    """
    from modelyard import batch

    if target == "kubernetes":
        if not dry_run:
            raise click.UsageError(
                "--target kubernetes renders the Job: add --dry-run and apply it with kubectl"
            )
        if claim is None:
            raise click.UsageError("--target kubernetes needs --claim (the data volume)")
        job = batch.plan_job(
            model,
            data,
            output=output,
            claim=claim,
            namespace=namespace,
            shards=shards,
            columns=_columns(columns),
            batch_rows=batch_rows,
            image=image,
            workspace=ws,
        )
        if fmt == "json":
            click.echo(json.dumps(job, indent=2))
        else:
            from modelyard.deploy.kubernetes import to_yaml

            click.echo(to_yaml([job]), nl=False)
        return
    if dry_run:
        raise click.UsageError("--dry-run applies to --target kubernetes only")
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    errors = err_console()
    with Progress(
        TextColumn("scoring"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=errors,
        transient=True,
        disable=not errors.is_terminal,
    ) as bar:
        task = bar.add_task("scoring", total=None)

        def progress(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        result = batch.predict(
            model,
            data,
            output=output,
            columns=_columns(columns),
            batch_rows=batch_rows,
            engine=engine,
            address=address,
            workers=workers,
            monitor=monitor,
            report=report,
            workspace=ws,
            progress=progress,
        )
    print_result(result)


def print_result(result: BatchResult) -> None:
    from modelyard.monitor.report_terminal import render_drift

    out = console()
    out.print(
        f"Scored {result.rows:,} rows of {result.input.ref} with {result.model.ref} in "
        f"{result.seconds:.1f} s ({result.rows_per_s:,.0f} rows/s) -> {result.output.ref} "
        f"(run {result.run_id[:12]})",
        markup=False,
    )
    if result.drift.report is not None:
        out.print(render_drift(result.drift.report))
    else:
        out.print(f"No drift measured: {result.drift.unavailable}", markup=False)
    if result.report is not None:
        out.print(f"HTML report: {result.report}", markup=False)
    for check in result.checks:
        fired = [f"{f.policy} ({f.action}: {f.status})" for f in check.firings]
        what = ", ".join(fired) if fired else "no policy fired"
        out.print(f"Monitor {check.deployment}: report #{check.report.id}, {what}", markup=False)
