"""``modelyard build``, ``modelyard dockerfile`` and ``modelyard push``: model images."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from modelyard.cli._common import console, pass_workspace, push_options
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
@click.option(
    "--builder",
    type=click.Choice(["docker", "oci"]),
    default="docker",
    show_default=True,
    help="docker: a Docker build. oci: modelyard writes the OCI image itself, bit for bit "
    "reproducible, with no Docker engine (base from a registry: HOST/REPO@sha256:...).",
)
@click.option("--no-cache", is_flag=True, help="Rebuild every layer.")
@click.option(
    "--no-bytecode",
    is_flag=True,
    help="oci: ship no .pyc files (smaller; every start compiles what it imports).",
)
@click.option(
    "--grpc", is_flag=True, help="oci: include the gRPC endpoint's packages (grpcio, protobuf)."
)
@click.option("--username", "-u", default=None, help="oci: registry user for the base image.")
@click.option(
    "--password-stdin", is_flag=True, help="oci: read the base registry's password from stdin."
)
@click.option("-q", "--quiet", is_flag=True, help="Print only the image tag (oci: the digest).")
@pass_workspace
def build(
    ws: Workspace,
    ref: str,
    base_image: str | None,
    builder: str,
    no_cache: bool,
    no_bytecode: bool,
    grpc: bool,
    username: str | None,
    password_stdin: bool,
    quiet: bool,
) -> None:
    """Build the image of model version REF (churn@4, churn@production).

    Dependencies are the training run's exact versions of what the model and the server need,
    installed offline from a wheelhouse; a version whose dependencies did not change rebuilds
    only its model layer. With --builder oci the image goes into .modelyard/oci (an OCI image
    layout) and 'modelyard push' sends it with the registry API.
    """
    out = console()
    say = None if quiet else (lambda msg: out.print(msg, markup=False, highlight=False))
    if builder == "oci":
        from modelyard.packaging.oci_build import build_oci_image

        password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
        oci = build_oci_image(
            ref,
            workspace=ws,
            base_image=base_image,
            progress=say,
            no_cache=no_cache,
            username=username,
            password=password,
            grpc=grpc,
            bytecode=not no_bytecode,
        )
        if quiet:
            click.echo(oci.manifest_digest)
            return
        for role, layer in oci.layers:
            if role != "base":
                out.print(
                    f"  {role:<8} {layer.digest[:19]}  {format_size(layer.uncompressed_size)}",
                    markup=False,
                )
        out.print(
            f"Built {oci.name} for {oci.version.ref} (manifest {oci.manifest_digest}, "
            f"{format_size(oci.size)}) in {oci.build_seconds:.1f} s",
            markup=False,
        )
        return
    from modelyard.packaging import build_model_image

    image = build_model_image(
        ref, workspace=ws, base_image=base_image, progress=say, no_cache=no_cache
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
@push_options
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
    if result.sbom_ref is not None:
        how = "a referrer of the image" if result.sbom_referrers_api else "no referrers API"
        out.print(f"Pushed the SBOM as {result.sbom_ref} ({how})", markup=False)
    out.print(f"Recorded {result.ref} on {result.version.ref}", markup=False)


@click.command()
@click.argument("ref")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the SBOM to this file instead of printing it.",
)
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


@click.command()
@click.argument("image_ref", metavar="IMAGE_REF")
@click.option("--username", "-u", default=None, help="User for --password-stdin.")
@click.option("--password-stdin", is_flag=True, help="Read the registry password from stdin.")
@pass_workspace
def verify(ws: Workspace, image_ref: str, username: str | None, password_stdin: bool) -> None:
    """Check an image in a registry (HOST/REPO:TAG or @sha256:...) against the registered
    version its labels name: labels, the model layer's files, the SBOM beside it; print the
    chain down to the datasets. Exit 1 when anything does not match."""
    from modelyard.errors import ImageVerificationFailed
    from modelyard.packaging.verify import verify_image

    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    result = verify_image(image_ref, workspace=ws, username=username, password=password)
    out = console()
    for check in result.checks:
        mark = "ok  " if check.ok else "FAIL"
        out.print(f"{mark} {check.name:<12} {check.detail}", markup=False, highlight=False)
    out.print("", markup=False)
    for line in result.chain:
        out.print(line, markup=False, highlight=False)
    if not result.ok:
        names = ", ".join(c.name for c in result.failures)
        raise ImageVerificationFailed(f"{result.image} does not verify ({names})")
