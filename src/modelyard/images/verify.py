"""An image earns its tag only after its programs run.

A build that was interrupted, or an import fed a truncated tarball, can leave an engine with an
image that exists but cannot start (an empty ``docker import`` is a valid 0-byte image). Tagging
such an image under its final name would make every later "reuse the existing tag" check reuse
the broken one. So every image modelyard makes is built or imported *untagged*, checked by
running its entry programs with no network, and tagged only then; an existing tag that fails the
same check is rebuilt.

A check is an argument vector run as the container's entrypoint (``docker run --rm --network
none --entrypoint ARGV[0] IMAGE ARGV[1:]``); it passes when it exits 0 within the time limit.
"""

from __future__ import annotations

from collections.abc import Sequence

from modelyard.errors import ImageBuildFailed, ImageError
from modelyard.images.engine import DockerEngine

Check = tuple[str, ...]

# Every image modelyard makes runs Python; the base also starts its programs under tini.
PYTHON_CHECK: Check = ("python3", "-c", "import encodings, json, venv")
TINI_CHECK: Check = ("tini", "--version")


def entrypoint_checks(entrypoint: Sequence[str] | None) -> list[Check]:
    """The checks an image's entrypoint implies: ``python -m MODULE …`` must find its module
    (without running it); any other program must be on the image's PATH."""
    if not entrypoint:
        return []
    program = entrypoint[0]
    is_python = program.rsplit("/", 1)[-1].startswith("python")
    if is_python and len(entrypoint) > 2 and entrypoint[1] == "-m":
        module = entrypoint[2]
        code = (
            "import importlib.util, sys; "
            f"sys.exit(0 if importlib.util.find_spec({module!r}) else 3)"
        )
        return [(program, "-c", code)]
    return [("sh", "-c", 'command -v "$0" >/dev/null', program)]


def failed_check(
    engine: DockerEngine, image: str, checks: Sequence[Check], *, timeout: float = 60
) -> str | None:
    """None when every check passes on ``image``, else why the first one failed."""
    for check in checks:
        args = ["run", "--rm", "--network", "none", "--entrypoint", check[0], image, *check[1:]]
        try:
            proc = engine.run(args, timeout=timeout, check=False)
        except ImageError as exc:  # the check hung
            return f"{' '.join(check)}: {exc}"
        if proc.returncode != 0:
            detail = (proc.stderr or proc.stdout).decode(errors="replace").strip()
            last = detail.splitlines()[-1] if detail else f"exit {proc.returncode}"
            return f"{' '.join(check)} failed: {last}"
    return None


def tag_verified(
    engine: DockerEngine,
    image_id: str,
    tags: Sequence[str],
    checks: Sequence[Check],
    *,
    what: str,
) -> None:
    """Tag ``image_id`` as each of ``tags`` once ``checks`` pass on it; otherwise remove the
    untagged image (when nothing else refers to it) and raise :class:`ImageBuildFailed`."""
    why = failed_check(engine, image_id, checks)
    if why is not None:
        engine.run(["image", "rm", image_id], check=False)
        raise ImageBuildFailed(
            f"{what} was built but does not run ({why}); it was not tagged {tags[0]}"
        )
    for tag in tags:
        engine.run(["tag", image_id, tag])
