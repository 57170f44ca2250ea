"""``modelyard lineage THING``: where a thing came from and what came of it, as a tree."""

from __future__ import annotations

from typing import TYPE_CHECKING

import click
from rich.markup import escape
from rich.tree import Tree

from modelyard.cli._common import console, pass_workspace
from modelyard.workspace import Workspace

if TYPE_CHECKING:
    from modelyard.tracking import LineageNode

_ARROW = {"up": "←", "down": "→"}


@click.command()
@click.argument("thing")
@click.option("--up", "up", is_flag=True, help="Only upstream: what THING was made from.")
@click.option("--down", "down", is_flag=True, help="Only downstream: what was made from THING.")
@click.option(
    "--depth", default=10, show_default=True, type=click.IntRange(min=1), help="Levels to walk."
)
@pass_workspace
def lineage(ws: Workspace, thing: str, up: bool, down: bool, depth: int) -> None:
    """Show the lineage of THING: a run id (or unique prefix), a dataset version such as
    sensors@4, a model version (churn@2, churn@production), an artifact or image digest, a
    monitor report number or a deployment name.

    \b
    A name that fits two kinds of thing is an error listing the choices; prefix it with its
    type to pick one:
      run:1a2b   dataset:sensors@4   model:churn@2   artifact:sha256:…
      image:sha256:…   report:12   deployment:churn-api

    Without --up or --down both directions are shown.
    """
    from modelyard.lineage import build_lineage

    direction = "up" if up and not down else "down" if down and not up else "both"
    root = build_lineage(ws, thing, direction=direction, depth=depth)
    tree = Tree(f"[bold]{escape(root.label)}[/]")
    ups = [c for c in root.children if c.direction == "up"]
    downs = [c for c in root.children if c.direction == "down"]
    if not ups and not downs:
        tree.add("[dim](no lineage recorded)[/]")
    for title, group in (("upstream", ups), ("downstream", downs)):
        if not group:
            continue
        branch = tree.add(f"[dim]{title}[/]") if direction == "both" else tree
        for child in group:
            _add(branch, child)
    console().print(tree)


def _add(parent: Tree, node: LineageNode) -> None:
    arrow = _ARROW.get(node.direction or "", "")
    note = " [dim](shown above)[/]" if node.repeated else " [dim]…[/]" if node.truncated else ""
    branch = parent.add(f"[dim]{escape(node.relation or '')} {arrow}[/] {escape(node.label)}{note}")
    for child in node.children:
        _add(branch, child)
