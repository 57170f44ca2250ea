"""``modelyard reproduce NAME@V``: re-run what made a model version and show what matched."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape
from rich.table import Table

from modelyard.cli._common import console, err_console, param_option, pass_workspace
from modelyard.workspace import Workspace

_STYLE = {"matched": "green", "differs": "red", "not checked": "yellow"}


@click.command()
@click.argument("version")
@click.option(
    "--check", is_flag=True, help="Exit 1 unless the re-made artifact's digest is identical."
)
@click.option(
    "--env",
    "env",
    type=click.Choice(["fresh", "current"]),
    default="fresh",
    show_default=True,
    help="fresh: a new venv from the run's recorded lock; current: this interpreter.",
)
@click.option(
    "--patch",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The run's uncommitted changes (git diff HEAD --binary), for a run of a dirty tree.",
)
@param_option("Override a recorded pipeline parameter (repeatable).")
@pass_workspace
def reproduce(
    ws: Workspace,
    version: str,
    check: bool,
    env: str,
    patch: Path | None,
    params: tuple[str, ...],
) -> None:
    """Re-run what produced model VERSION (churn@3) from its recorded inputs — the dataset
    versions by digest, the code at the recorded commit in a clean temporary git worktree, the
    locked environment, the parameters — and show, row by row, what matched.

    A run of a tree with uncommitted changes is refused unless --patch holds exactly those
    changes (its digest is the recorded one).
    """
    from modelyard.pipeline.params import parse_assignments
    from modelyard.reproduce import reproduce as run_reproduce

    def progress(message: str) -> None:
        err_console().print(f"[dim]{escape(message)}[/]", markup=True)

    result = run_reproduce(
        version,
        workspace=ws,
        env=env,
        patch=patch,
        params=parse_assignments(params),
        progress=progress,
    )
    table = Table(title=f"reproduce {result.version}", title_justify="left")
    table.add_column("")
    table.add_column("result")
    table.add_column("reason", overflow="fold")
    for row in result.rows:
        style = _STYLE.get(row.status, "")
        table.add_row(row.name, f"[{style}]{row.status}[/]", escape(row.reason))
    console().print(table)
    verdict = "identical" if result.identical else "NOT identical"
    console().print(f"artifact digest {verdict} ({result.seconds:.1f} s)")
    if check and not result.identical:
        sys.exit(1)
