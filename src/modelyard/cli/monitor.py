"""``modelyard monitor``: check a deployment once, watch all of them, write an HTML report.

Exit codes of ``monitor check``: 0 no policy fired, 3 at least one policy fired (its action
ran, or its cooldown held it back), 1 the check itself failed. Scripts and cron jobs can branch
on them without parsing the output.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from modelyard.cli._common import console, err_console, pass_workspace
from modelyard.workspace import Workspace

if TYPE_CHECKING:
    from rich.console import Console

    from modelyard.errors import ModelyardError
    from modelyard.monitor.check import CheckResult

EXIT_FIRED = 3


@click.group()
def monitor() -> None:
    """Watch served models: drift, quality, availability, and the policies acting on them."""


@monitor.command()
@click.argument("deployment")
@pass_workspace
def check(ws: Workspace, deployment: str) -> None:
    """Run one monitor pass over DEPLOYMENT and print its report.

    Exit code 0: no policy fired; 3: a policy fired; 1: the check failed.
    """
    from modelyard.monitor.check import check_deployment

    result = check_deployment(ws, deployment)
    print_result(console(), result)
    if result.fired:
        sys.exit(EXIT_FIRED)


@monitor.command()
@click.option(
    "--interval",
    type=float,
    default=None,
    help="Seconds between passes (default: [monitor] interval, 300).",
)
@click.option("--deployment", "deployments", multiple=True, help="Watch only these (repeatable).")
@click.option("--once", is_flag=True, help="Run a single pass and exit.")
@pass_workspace
def watch(ws: Workspace, interval: float | None, deployments: tuple[str, ...], once: bool) -> None:
    """Check every served deployment on a schedule until stopped.

    Ctrl-C or SIGTERM stop it cleanly after the current step; a retrain in progress stops
    before its next step and changes nothing that serves.
    """
    import threading

    from modelyard.monitor.watch import stop_on_signals
    from modelyard.monitor.watch import watch as run_watch

    out = console()

    def failed(name: str, exc: ModelyardError) -> None:
        err_console().print(f"[bold red]error:[/] {name}: {exc.message}")

    out.print("Watching deployments (Ctrl-C to stop)")
    with stop_on_signals(threading.Event()) as stop:
        passes = run_watch(
            ws,
            interval=interval,
            deployments=deployments,
            stop=stop,
            on_result=lambda r: print_summary(out, r),
            on_error=failed,
            max_passes=1 if once else None,
        )
    out.print(f"Stopped after {passes} pass(es)")


@monitor.command()
@click.argument("deployment")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("report.html"),
    show_default=True,
)
@click.option("--limit", default=50, show_default=True, help="How many recent passes to chart.")
@pass_workspace
def report(ws: Workspace, deployment: str, output: Path, limit: int) -> None:
    """Write a self-contained HTML report (no network needed to read it) for DEPLOYMENT."""
    from modelyard.monitor.history import write_deployment_report

    path = write_deployment_report(ws, deployment, output, limit=limit)
    console().print(f"Wrote {path}")


def print_result(out: Console, result: CheckResult) -> None:
    """The rich report of one pass: the statistics' own tables, then the policies."""
    from rich.table import Table

    render = _renderers()
    for key, obj in result.observation.objects.items():
        if obj is not None and key in render:
            out.print(render[key](obj))
    latest = result.observation.latest
    if not result.observation.windows:
        out.print("No traffic logged for the served version yet.")
    elif latest:
        shown = ", ".join(f"{k} {_num(v)}" for k, v in sorted(latest.items()))
        out.print(f"Newest window: {shown}")
    table = Table(title=f"Policies for {result.deployment}", title_justify="left")
    table.add_column("policy")
    table.add_column("action")
    table.add_column("status")
    table.add_column("why")
    table.add_column("outcome")
    for firing in result.firings:
        outcome = firing.outcome.get("reason") or firing.outcome.get("status") or ""
        if firing.status == "cooldown":
            outcome = f"cooling down until {firing.outcome.get('until')}"
        table.add_row(
            firing.policy, firing.action, firing.status, "\n".join(firing.reasons), str(outcome)
        )
    if result.firings:
        out.print(table)
    print_summary(out, result)


def print_summary(out: Console, result: CheckResult) -> None:
    verdict = (
        f"[bold yellow]{len(result.firings)} policy(ies) fired[/]"
        if result.fired
        else "[green]no policy fired[/]"
    )
    out.print(f"monitor report {result.report.id} for {result.deployment}: {verdict}")


def _renderers() -> dict[str, Callable[[Any], Any]]:
    try:
        from modelyard.monitor.report_terminal import (
            render_availability,
            render_drift,
            render_quality,
        )
    except ImportError:  # pragma: no cover - the statistics stage ships these
        return {}
    return {"drift": render_drift, "quality": render_quality, "availability": render_availability}


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"
