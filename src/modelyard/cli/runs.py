"""`modelyard runs` commands (placeholder until the stage lands)."""

from __future__ import annotations

import click


@click.group()
def runs() -> None:
    """runs commands."""
