"""``modelyard`` command line: parses, calls the library, renders. No logic lives here."""

from __future__ import annotations

from pathlib import Path

import click

from modelyard._version import __version__
from modelyard.cli._common import CliState, ErrorBoundaryGroup, console
from modelyard.workspace import Workspace


@click.group(cls=ErrorBoundaryGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "-C",
    "--directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Run as if started in this folder (the workspace is searched from there upwards).",
)
@click.option("--debug", is_flag=True, help="Show full tracebacks for errors.")
@click.version_option(__version__, prog_name="modelyard")
@click.pass_context
def cli(ctx: click.Context, directory: Path | None, debug: bool) -> None:
    """modelyard: versioned data, pipelines, tracked runs, a model registry, model images,
    serving and monitoring, on one machine or a team's infrastructure.

    Start with 'modelyard init' in your project folder.
    """
    ctx.obj = CliState(directory=directory, debug=debug)


@cli.command()
@click.argument("path", required=False, type=click.Path(file_okay=False, path_type=Path))
@click.pass_obj
def init(state: CliState, path: Path | None) -> None:
    """Make PATH (default: the current folder) a modelyard workspace.

    Writes modelyard.toml and creates .modelyard/ with an SQLite store and an artifact folder.
    Running it again is harmless.
    """
    target = path or state.directory or Path.cwd()
    ws, created = Workspace.init(target)
    ws.close()
    if created:
        console().print(f"Initialised modelyard workspace in {ws.root}")
    else:
        console().print(f"{ws.root} is already a modelyard workspace (nothing changed)")


# Each stage's command group; imported after `cli` exists so they can be attached to it.
from modelyard.cli import data, lineage, runs  # noqa: E402

cli.add_command(data.data)
cli.add_command(runs.runs)
cli.add_command(lineage.lineage)

from modelyard.cli.images import base as _base_group  # noqa: E402

cli.add_command(_base_group)

from modelyard.cli import models as _models_cli  # noqa: E402
from modelyard.cli import serve as _serve_cli  # noqa: E402

cli.add_command(_models_cli.models)
cli.add_command(_serve_cli.serve)

from modelyard.cli import pipeline as _pipeline_cli  # noqa: E402

cli.add_command(_pipeline_cli.pipeline)

from modelyard.cli import monitor as _monitor_cli  # noqa: E402

cli.add_command(_monitor_cli.monitor)


from modelyard.cli import server as _server_cli  # noqa: E402

cli.add_command(_server_cli.server)
cli.add_command(_server_cli.tokens)

from modelyard.cli import deploy as _deploy_cli  # noqa: E402
from modelyard.cli import packaging as _packaging_cli  # noqa: E402

cli.add_command(_packaging_cli.build)
cli.add_command(_packaging_cli.dockerfile)
cli.add_command(_packaging_cli.push)
cli.add_command(_packaging_cli.sbom)
cli.add_command(_packaging_cli.verify)
cli.add_command(_deploy_cli.deploy)
cli.add_command(_deploy_cli.deployments)

from modelyard.cli import gc as _gc_cli  # noqa: E402

cli.add_command(_gc_cli.gc)

from modelyard.cli import batch as _batch_cli  # noqa: E402

cli.add_command(_batch_cli.predict)

from modelyard.cli import reproduce as _reproduce_cli  # noqa: E402

cli.add_command(_reproduce_cli.reproduce)


def main() -> None:
    cli(prog_name="modelyard")
