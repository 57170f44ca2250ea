"""What every command shares: the workspace handed in, the consoles, the error boundary."""

from __future__ import annotations

import functools
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.markup import escape

from modelyard.errors import ModelyardError
from modelyard.workspace import Workspace

F = TypeVar("F", bound=Callable[..., Any])


@dataclass
class CliState:
    directory: Path | None = None
    debug: bool = False
    _workspace: Workspace | None = field(default=None, repr=False)

    @property
    def workspace(self) -> Workspace:
        if self._workspace is None:
            self._workspace = Workspace.find(self.directory)
        return self._workspace


def console() -> Console:
    # Built per call so CliRunner's captured stdout is honoured.
    return Console(soft_wrap=True, highlight=False)


def plain_console() -> Console:
    """For output that carries stored text (CSV headers and values, descriptions): brackets in
    it are data, never rich markup. Styling stays available per call with ``markup=True``."""
    return Console(soft_wrap=True, highlight=False, markup=False)


def err_console() -> Console:
    return Console(stderr=True, soft_wrap=True, highlight=False)


def param_option(help_text: str) -> Callable[[F], F]:
    """``-p/--param NAME=VALUE``, repeatable, as pipeline commands take it."""
    return click.option(
        "-p", "--param", "params", multiple=True, metavar="NAME=VALUE", help=help_text
    )


def push_options(fn: F) -> F:
    """``-u/--username``, ``--password-stdin`` and ``--retries``, as push commands take them."""
    options = [
        click.option("--username", "-u", default=None, help="User for --password-stdin."),
        click.option(
            "--password-stdin",
            is_flag=True,
            help="Read the password from stdin (else the Docker config's credentials are used).",
        ),
        click.option("--retries", default=4, show_default=True, type=click.IntRange(1, 10)),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def pass_workspace(fn: F) -> F:
    """Hand the command the workspace found from ``-C`` or the current folder."""

    @click.pass_obj
    @functools.wraps(fn)
    def wrapper(state: CliState, *args: Any, **kwargs: Any) -> Any:
        return fn(state.workspace, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class ErrorBoundaryGroup(click.Group):
    """The one place where a ModelyardError becomes a one-line message and an exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ModelyardError as exc:
            state = ctx.find_object(CliState)
            if state is not None and state.debug:
                traceback.print_exc()
            err_console().print(f"[bold red]error:[/] {escape(exc.message)}", markup=True)
            sys.exit(exc.exit_code)
        finally:
            state = ctx.find_object(CliState)
            if state is not None and state._workspace is not None:
                state._workspace.close()
