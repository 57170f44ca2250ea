"""``modelyard runs``: list, show and compare tracked runs."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

from modelyard.cli._common import console, pass_workspace
from modelyard.units import format_size
from modelyard.workspace import Workspace

_STATUS_STYLE = {"running": "cyan", "finished": "green", "failed": "red", "lost": "yellow"}
_KEY_METRICS = 3


@click.group()
def runs() -> None:
    """Tracked runs: what ran, with which parameters, data, code and environment."""


@runs.command("list")
@click.option("--limit", "-n", default=20, show_default=True, type=click.IntRange(min=1))
@click.option(
    "--status",
    type=click.Choice(["running", "finished", "failed", "lost"]),
    help="Only runs in this state; 'lost' = still marked running but no heartbeat.",
)
@click.option("--pipeline", help="Only runs of this pipeline.")
@pass_workspace
def list_(ws: Workspace, limit: int, status: str | None, pipeline: str | None) -> None:
    """List runs, newest first."""
    from modelyard.tracking import list_runs

    summaries = list_runs(ws, limit=limit, status=status, pipeline=pipeline)
    out = console()
    if not summaries:
        out.print("No runs yet." if status is None and pipeline is None else "No matching runs.")
        return
    table = Table(box=None, pad_edge=False)
    for column in ("ID", "NAME", "PIPELINE", "STATUS", "STARTED", "DURATION", "METRICS"):
        table.add_column(column, no_wrap=column != "METRICS", overflow="fold")
    for item in summaries:
        run = item.run
        metrics = " ".join(
            f"{k}={_num(v)}" for k, v in sorted(run.latest_metrics.items())[:_KEY_METRICS]
        )
        table.add_row(
            run.id[:12],
            Text(run.name or ""),
            Text(run.pipeline or ""),
            Text(item.status, style=_STATUS_STYLE.get(item.status, "")),
            _when(run.start_time),
            _duration(item.duration_s),
            Text(metrics),
        )
    out.print(table)


@runs.command("show")
@click.argument("run_id", metavar="RUN")
@pass_workspace
def show(ws: Workspace, run_id: str) -> None:
    """Everything recorded about RUN (a run id or a unique prefix of it)."""
    from modelyard.hashing import short
    from modelyard.lineage import default_node_types
    from modelyard.tracking import get_run

    details = get_run(ws, run_id)
    run = details.run
    types = default_node_types()
    out = console()
    out.print(Text.assemble(("Run " + run.id, "bold"), f"  {run.name}" if run.name else ""))
    status = Text(details.status, style=_STATUS_STYLE.get(details.status, ""))
    fields: list[tuple[str, str | Text]] = [
        ("status", status),
        ("pipeline", run.pipeline or "-"),
        ("parent", run.parent_id or "-"),
        ("started", _when(run.start_time)),
        ("ended", _when(run.end_time) if run.end_time else "-"),
        ("duration", _duration(details.duration_s)),
        ("code", _code(run.git_commit, run.git_dirty, run.git_diff_digest)),
        ("environment", run.environment_digest or "-"),
        ("python", run.python_version or "-"),
        ("host", f"{run.user or '?'}@{run.host or '?'}"),
    ]
    if run.error:
        fields.insert(1, ("error", Text(run.error, style="red")))
    _rows(out, fields)

    _section(out, "Parameters", [(k, v) for k, v in sorted(run.params.items())])
    steps = details.metric_steps or {}
    _section(
        out,
        "Metrics",
        [
            (k, f"{_num(v)}" + (f"  ({steps[k]} points)" if steps.get(k, 1) > 1 else ""))
            for k, v in sorted(run.latest_metrics.items())
        ],
    )
    _section(out, "Tags", [(k, v) for k, v in sorted(run.tags.items())])
    _section(
        out,
        "Inputs",
        [(e.relation, types.label(ws, e.source_type, e.source_id)) for e in details.inputs],
    )
    _section(
        out,
        "Outputs",
        [
            (e.relation, types.label(ws, e.target_type, e.target_id))
            for e in details.outputs
            if e.target_type != "artifact"
        ],
    )
    _section(
        out,
        "Artifacts",
        [(a.name, f"{a.kind} {format_size(a.size)} {short(a.digest)}") for a in details.artifacts],
    )


@runs.command("compare")
@click.argument("run_ids", metavar="RUN RUN...", nargs=-1, required=True)
@pass_workspace
def compare(ws: Workspace, run_ids: tuple[str, ...]) -> None:
    """Parameters and latest metrics of two or more runs side by side; rows that differ are
    marked with '*' and highlighted."""
    from modelyard.tracking import compare_runs

    if len(run_ids) < 2:
        raise click.UsageError("give at least two runs to compare")
    comparison = compare_runs(ws, run_ids)
    table = Table(box=None, pad_edge=False)
    table.add_column("")
    table.add_column("KEY")
    for run in comparison.runs:
        table.add_column(Text(run.id[:12] + (f" {run.name}" if run.name else "")), overflow="fold")
    rows: list[tuple[str, tuple[str, ...], bool]] = []
    rows += [
        (f"param {k}", tuple("-" if v is None else v for v in values), differs)
        for k, values, differs in comparison.params
    ]
    rows += [
        (f"metric {k}", tuple("-" if v is None else _num(v) for v in mvalues), differs)
        for k, mvalues, differs in comparison.metrics
    ]
    for key, cells, differs in rows:
        style = "bold yellow" if differs else ""
        table.add_row("*" if differs else "", Text(key), *(Text(c) for c in cells), style=style)
    out = console()
    if not rows:
        out.print("These runs have no parameters or metrics to compare.")
        return
    out.print(table)


def _section(out: Console, title: str, rows: list[tuple[str, str]]) -> None:
    if not rows:
        return
    out.print(f"\n[bold]{title}[/]")
    _rows(out, [(k, v) for k, v in rows])


def _rows(out: Console, rows: Sequence[tuple[str, str | Text]]) -> None:
    """``key  value`` lines, keys aligned; values never truncated (digests must stay whole)."""
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        out.print(Text.assemble((key.ljust(width), "bold"), "  ", value))


def _code(commit: str | None, dirty: bool | None, diff: str | None) -> str:
    if commit is None:
        return "- (not in a git repository)"
    from modelyard.hashing import short

    if dirty:
        return f"{commit[:12]} + uncommitted changes (diff {short(diff) if diff else '?'})"
    return commit[:12]


def _when(moment: datetime) -> str:
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _num(value: float) -> str:
    return f"{value:.6g}"
