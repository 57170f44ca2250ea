"""``modelyard build``, ``modelyard dockerfile`` and ``modelyard push``: model images."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelyard.cli._common import console, pass_workspace
from modelyard.units import format_size

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

_BASE = click.option(
    "--base-image",
    default=None,
    metavar="REF",
    help="Base image [default: [images] base_image of modelyard.toml, else python:3.11-slim].",
)


@click.command()
@click.argument("ref")
@_BASE
@click.option("-q", "--quiet", is_flag=True, help="Print only the image tag.")
@pass_workspace
def build(ws: Workspace, ref: str, base_image: str | None, quiet: bool) -> None:
    """Build the image of model version REF (churn@4, churn@production) with Docker.

    Dependencies are the training run's exact versions of what the model and the server need,
    installed offline from a wheelhouse; a version whose dependencies did not change rebuilds
    only its model layer.
    """
    from modelyard.packaging import build_model_image

    out = console()
    image = build_model_image(
        ref,
        workspace=ws,
        base_image=base_image,
        progress=None if quiet else (lambda msg: out.print(msg, markup=False, highlight=False)),
    )
    if quiet:
        click.echo(image.tag)
        return
    seconds = image.info.build_seconds or 0.0
    out.print(
        f"Built {image.tag} for {image.version.ref} ({image.id[:19]}, "
        f"{format_size(image.size)}) in {seconds:.1f} s",
        markup=False,
    )


@click.command()
@click.argument("ref")
@click.option(
    "-o",
    "--output",
    "output",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder to write (emptied first).",
)
@_BASE
@pass_workspace
def dockerfile(ws: Workspace, ref: str, output: Path, base_image: str | None) -> None:
    """Write a self-contained build context for REF to a folder, for a team's own CI.

    It builds with plain 'docker build' and needs no network: wheels and model files are in it.
    """
    from modelyard.packaging import write_model_context

    ctx = write_model_context(ref, output, workspace=ws, base_image=base_image)
    console().print(f"Wrote the build context of {ref} to {ctx.path}", markup=False)


@click.command()
@click.argument("ref")
@click.option("--registry", required=True, metavar="HOST/PATH", help="Registry and path.")
@click.option("--username", "-u", default=None, help="User for --password-stdin.")
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Read the password from stdin (else the Docker config's credentials are used).",
)
@click.option("--retries", default=4, show_default=True, type=click.IntRange(1, 10))
@pass_workspace
def push(
    ws: Workspace,
    ref: str,
    registry: str,
    username: str | None,
    password_stdin: bool,
    retries: int,
) -> None:
    """Push REF's image as :VERSION and :sha-<digest>, verify it by digest, and record it."""
    from modelyard.packaging import push_model_image

    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    result = push_model_image(
        ref, registry, workspace=ws, username=username, password=password, attempts=retries
    )
    out = console()
    for tag in result.tags:
        out.print(f"Pushed {tag}", markup=False)
    out.print(f"Recorded {result.ref} on {result.version.ref}", markup=False)


@click.command()
@click.argument("ref")
@click.option(
    "-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
    help="Write the SBOM to this file instead of printing it.",
)  # fmt: skip
@pass_workspace
def sbom(ws: Workspace, ref: str, output: Path | None) -> None:
    """Print the CycloneDX SBOM (JSON) of model version REF's image, recorded by its latest
    'modelyard build': each Python package with version and wheel sha256, each Debian package
    of the base image."""
    from modelyard.packaging.sbom import sbom_of

    data = sbom_of(ref, ws)
    if output is None:
        sys.stdout.buffer.write(data + b"\n")
        return
    tmp = output.with_name(output.name + ".part")
    tmp.write_bytes(data)
    tmp.replace(output)
    console().print(f"Wrote the SBOM of {ref} to {output}", markup=False)
