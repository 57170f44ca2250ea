"""``modelyard base``: make the base image other images are built on."""

from __future__ import annotations

import time

import click

from modelyard.cli._common import console
from modelyard.units import format_size


@click.group()
def base() -> None:
    """Base images with Python, made from Debian packages (no registry needed)."""


@base.command("build")
@click.option(
    "--tag", default=None, metavar="REF", help="Image tag [default: modelyard/base:pyX.Y-SUITE]."
)
@click.option(
    "--python",
    "python",
    default="3.11",
    show_default=True,
    help="Python version; picks the Debian release that ships it.",
)
@click.option("--mirror", default=None, metavar="URL", help="Debian mirror (default: the host's).")
@click.option(
    "--package", "packages", multiple=True, metavar="PKG", help="Extra Debian package (repeatable)."
)
@click.option("--rebuild", is_flag=True, help="Build again even if the tag exists.")
def build(
    tag: str | None, python: str, mirror: str | None, packages: tuple[str, ...], rebuild: bool
) -> None:
    """Build a base image with mmdebstrap and 'docker import'.

    An existing tag is kept (images built on it keep their cache) unless --rebuild is given.
    """
    from modelyard.images import build_base_image
    from modelyard.images.base import suite_for_python

    ref = tag or f"modelyard/base:py{python}-{suite_for_python(python)}"
    out = console()
    started = time.perf_counter()
    info = build_base_image(
        ref,
        python=python,
        mirror=mirror,
        packages=packages,
        rebuild=rebuild,
        progress=lambda msg: out.print(msg),
    )
    size = format_size(info.size)
    if info.build_seconds is None:
        out.print(f"{ref} already exists ({info.id[:19]}, {size}); --rebuild to build it again")
    else:
        out.print(f"Built {ref} ({info.id[:19]}, {size}) in {time.perf_counter() - started:.1f} s")
