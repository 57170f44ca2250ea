"""``modelyard gc``: remove the artifact blobs no record refers to (thin over
:mod:`modelyard.garbage`)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import click

from modelyard.cli._common import pass_workspace
from modelyard.units import format_size

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class Duration(click.ParamType):  # type: ignore[type-arg]
    """Seconds from ``3600``, ``90s``, ``30m``, ``1h``, ``2d``."""

    name = "duration"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, int | float):
            return float(value)
        match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", str(value).strip())
        if match is None:
            self.fail(f"{value!r} is not a duration like 3600, 30m, 1h or 2d", param, ctx)
        return float(match[1]) * _UNITS[match[2] or "s"]


def _duration(seconds: float) -> str:
    for unit in ("d", "h", "m"):
        if seconds >= _UNITS[unit] and seconds % _UNITS[unit] == 0:
            return f"{seconds / _UNITS[unit]:.0f}{unit}"
    return f"{seconds:g}s"


def _blobs(count: int, size: int) -> str:
    return f"{count} blob{'' if count == 1 else 's'} ({format_size(size)})"


@click.command("gc")
@click.option("--dry-run", is_flag=True, help="Count what would be removed; remove nothing.")
@click.option(
    "--grace",
    type=Duration(),
    default="1h",
    show_default=True,
    help="Keep unreferenced blobs younger than this: a write in progress stores its blob "
    "before it records it.",
)
@click.option(
    "--upload-grace",
    type=Duration(),
    default="1d",
    show_default=True,
    help="Remove a team server's interrupted upload parts untouched for this long.",
)
@pass_workspace
def gc(ws: Workspace, dry_run: bool, grace: float, upload_grace: float) -> None:
    """Remove the artifact blobs that no dataset, run, model, pipeline or monitor record refers
    to (folder manifests are followed), and print what was freed.

    Run it where the artifacts live: in a team server's own workspace, not in a client of it.
    """
    from modelyard.garbage import collect_garbage

    result = collect_garbage(ws, grace_s=grace, dry_run=dry_run, upload_grace_s=upload_grace)
    removed = _blobs(result.removed, result.removed_bytes)
    lines = [
        f"referenced:   {_blobs(result.kept, result.kept_bytes)}, kept",
        f"recent:       {_blobs(result.recent, result.recent_bytes)}, kept "
        f"(unreferenced, younger than {_duration(result.grace_s)})",
        f"would remove: {removed} (dry run: nothing removed)"
        if dry_run
        else f"removed:      {removed} freed",
    ]
    if result.parts_removed:
        size = format_size(result.parts_removed_bytes)
        verb = "would remove" if dry_run else "removed"
        lines.append(f"{verb}: {result.parts_removed} stale upload part(s) ({size})")
    click.echo("\n".join(lines))
