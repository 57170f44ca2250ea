"""``modelyard data``: snapshot, list, show, diff and check out dataset versions.

Thin: every command calls :mod:`modelyard.data` and renders the result with rich.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from modelyard.cli._common import err_console, pass_workspace, plain_console
from modelyard.units import format_size

if TYPE_CHECKING:
    from rich.table import Table

    from modelyard.data import DatasetDiff
    from modelyard.store import DatasetVersion
    from modelyard.workspace import Workspace


def _short(digest: str) -> str:
    return digest[: len("sha256:") + 12]


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _rows(version: DatasetVersion) -> str:
    profile = version.profile or {}
    return _fmt(profile.get("row_count"))


@click.group()
def data() -> None:
    """Versioned datasets: snapshot files and folders with a schema and a profile."""


@data.command("add")
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--name", "-n", required=True, help="Dataset name (letters, digits, . _ -).")
@click.option("--description", "-d", help="What this version is.")
@click.option(
    "--link",
    is_flag=True,
    help="Share the file's blocks with the local store instead of copying them (reflink, else "
    "hard link); only for a file nobody will modify in place afterwards.",
)
@pass_workspace
def add_cmd(ws: Workspace, path: Path, name: str, description: str | None, link: bool) -> None:
    """Snapshot PATH (a file or folder) as the next version of dataset NAME.

    Identical content returns the existing version; CSV and Parquet files are profiled.
    """
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from modelyard import data as datasets

    labels = {"store": "hashing and storing", "profile": "profiling"}
    errors = err_console()
    with Progress(
        TextColumn("{task.description:<20}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=errors,
        transient=True,
        disable=not errors.is_terminal,  # no bar residue in logs and pipes
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(phase: str, done: int, total: int) -> None:
            if phase not in tasks:
                tasks[phase] = bar.add_task(labels.get(phase, phase), total=total)
            bar.update(tasks[phase], completed=done, total=total)

        result = datasets.add(
            path, name=name, description=description, workspace=ws, progress=progress, link=link
        )
    v = result.version
    what = (
        f"{format_size(v.size)}, {v.file_count} file{'s' if v.file_count != 1 else ''}, {v.format}"
    )
    if v.profile and v.profile.get("mode") == "table":
        what += f", {v.profile['row_count']} rows x {v.profile['column_count']} columns"
    if result.created:
        plain_console().print(f"Added {v.ref} ({_short(v.digest)}, {what})")
    else:
        plain_console().print(f"Unchanged: {v.ref} already holds this content ({_short(v.digest)})")


@data.command("list")
@pass_workspace
def list_cmd(ws: Workspace) -> None:
    """List datasets with their latest version."""
    from rich.table import Table

    from modelyard import data as datasets

    found = datasets.list(workspace=ws)
    if not found:
        plain_console().print(
            "No datasets yet; add one with 'modelyard data add PATH --name NAME'."
        )
        return
    table = Table("NAME", "LATEST", "FORMAT", "SIZE", "ROWS", "UPDATED")
    for ds in found:
        if ds.latest_version is None:
            table.add_row(ds.name, "-", "-", "-", "-", "-")
            continue
        v = datasets.show(f"{ds.name}@{ds.latest_version}", workspace=ws)
        table.add_row(
            ds.name,
            str(v.version),
            v.format,
            format_size(v.size),
            _rows(v),
            v.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    plain_console().print(table)


@data.command("versions")
@click.argument("name")
@pass_workspace
def versions_cmd(ws: Workspace, name: str) -> None:
    """List the versions of dataset NAME."""
    from rich.table import Table

    from modelyard import data as datasets

    table = Table("VERSION", "DIGEST", "FORMAT", "SIZE", "FILES", "ROWS", "CREATED", "DESCRIPTION")
    for v in datasets.versions(name, workspace=ws):
        table.add_row(
            str(v.version),
            _short(v.digest),
            v.format,
            format_size(v.size),
            str(v.file_count),
            _rows(v),
            v.created_at.strftime("%Y-%m-%d %H:%M"),
            v.description or "",
        )
    plain_console().print(table)


def _profile_table(profile: dict[str, Any], title: str | None = None) -> Table:
    from rich.table import Table

    table = Table(
        "COLUMN", "TYPE", "MISSING", "MIN", "MEAN", "STD", "MAX", "DISTINCT / TOP", title=title
    )
    for c in profile.get("columns", []):
        top = ""
        if "top" in c:
            shown = ", ".join(f"{t['value']} ({t['count']})" for t in c["top"][:3])
            more = "" if c.get("distinct_exact", True) else "≥"
            top = f"{more}{c['distinct']}: {shown}"
        table.add_row(
            c["name"],
            c["type"],
            f"{c['missing_share']:.1%}",
            _fmt(c.get("min")),
            _fmt(c.get("mean")),
            _fmt(c.get("std")),
            _fmt(c.get("max")),
            top,
        )
    return table


@data.command("show")
@click.argument("ref")
@click.option("--json", "as_json", is_flag=True, help="Print the version, schema and profile.")
@pass_workspace
def show_cmd(ws: Workspace, ref: str, as_json: bool) -> None:
    """Show REF (NAME, NAME@VERSION, NAME@latest or NAME@sha256:…): schema and profile."""
    import json
    from dataclasses import asdict

    from modelyard import data as datasets

    v = datasets.show(ref, workspace=ws)
    out = plain_console()
    if as_json:
        click.echo(json.dumps(asdict(v), default=str, indent=2))
        return
    out.print(f"[bold]{v.ref}[/]  {v.digest}", markup=True)
    out.print(
        f"{v.kind}, {v.format}, {format_size(v.size)}, {v.file_count} file"
        f"{'s' if v.file_count != 1 else ''}; added {v.created_at:%Y-%m-%d %H:%M:%S} UTC"
        f"{' by ' + v.created_by if v.created_by else ''}"
    )
    if v.source:
        out.print(f"source: {v.source}")
    if v.description:
        out.print(f"description: {v.description}")
    profile = v.profile
    if not profile:
        out.print("no profile (not tabular)")
        return
    if profile.get("mode") == "per_file":
        for path, prof in profile["files"].items():
            out.print(_profile_table(prof, title=f"{path}: {prof['row_count']} rows"))
        return
    out.print(f"{profile['row_count']} rows x {profile['column_count']} columns")
    out.print(_profile_table(profile))


def _render_diff(d: DatasetDiff) -> None:
    out = plain_console()
    out.print(f"{d.a.ref} ({_short(d.a.digest)}) -> {d.b.ref} ({_short(d.b.digest)})")
    if d.identical:
        out.print("identical content")
        return
    for sign, label, paths in (
        ("+", "added", d.files_added),
        ("-", "removed", d.files_removed),
        ("~", "changed", d.files_changed),
    ):
        for p in paths:
            out.print(f"  {sign} {p}  ({label})", markup=False)
    if d.row_count_a is not None or d.row_count_b is not None:
        out.print(f"rows: {_fmt(d.row_count_a)} -> {_fmt(d.row_count_b)}")
    for c in d.columns_added:
        out.print(f"column added: {c}")
    for c in d.columns_removed:
        out.print(f"column removed: {c}")
    for t in d.type_changes:
        out.print(f"column type changed: {t.column}: {t.old} -> {t.new}")
    for s in d.shifts:
        notes = []
        if s.mean_shift_std is not None and abs(s.mean_shift_std) >= 0.01:
            notes.append(f"mean {_fmt(s.mean_a)} -> {_fmt(s.mean_b)} ({s.mean_shift_std:+.2f} std)")
        if abs(s.missing_share_change) >= 0.0005:
            notes.append(f"missing {s.missing_share_a:.1%} -> {s.missing_share_b:.1%}")
        if s.new_categories:
            notes.append("new top categories: " + ", ".join(map(str, s.new_categories)))
        if s.vanished_categories:
            notes.append("vanished: " + ", ".join(map(str, s.vanished_categories)))
        if notes:
            out.print(f"{s.column}: " + "; ".join(notes), markup=False)


@data.command("diff")
@click.argument("a")
@click.argument("b")
@pass_workspace
def diff_cmd(ws: Workspace, a: str, b: str) -> None:
    """Compare version A (the reference) with version B: files, schema, profile shifts."""
    from modelyard import data as datasets

    _render_diff(datasets.diff(a, b, workspace=ws))


@data.command("checkout")
@click.argument("ref")
@click.option(
    "-o",
    "--output",
    "dest",
    type=click.Path(path_type=Path),
    help="Where to write (default: the original file name, or NAME/ for folders).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing non-empty destination.")
@pass_workspace
def checkout_cmd(ws: Workspace, ref: str, dest: Path | None, force: bool) -> None:
    """Write the files of REF to disk, verifying every digest."""
    from modelyard import data as datasets

    v = datasets.show(ref, workspace=ws)
    written = datasets.checkout(f"{v.name}@{v.version}", dest=dest, force=force, workspace=ws)
    plain_console().print(
        f"Checked out {v.ref} to {written} ({v.file_count} file"
        f"{'s' if v.file_count != 1 else ''}, {format_size(v.size)})"
    )
