"""A base image with Python, made from Debian packages, for sites that cannot pull one.

``mmdebstrap`` installs a minimal Debian (the 'essential' set plus python3, python3-venv,
ca-certificates and tini) from the apt mirror the host already uses, and ``docker import`` turns
the tarball into an image — no registry is contacted. About 30 seconds, about 150 MB.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from modelyard.errors import ImageBuildFailed, InvalidParameter
from modelyard.images import validate as v
from modelyard.images.build import ImageInfo, image_info
from modelyard.images.engine import DockerEngine
from modelyard.images.verify import PYTHON_CHECK, TINI_CHECK, Check, failed_check, tag_verified
from modelyard.units import format_size

DEFAULT_BASE_TAG = "modelyard/base:py3.11-bookworm"
# libstdc++6 and libgomp1: numpy, scikit-learn and pyarrow wheels link against them.
BASE_PACKAGES = ("python3", "python3-venv", "ca-certificates", "tini", "libstdc++6", "libgomp1")
# The image label recording what a base was made of; an existing tag made of something else
# (an older modelyard's package list) is rebuilt rather than silently reused.
PACKAGES_LABEL = "io.modelyard.base.packages"
# The one python3 each Debian release ships.
DEBIAN_PYTHON = {"bullseye": "3.9", "bookworm": "3.11", "trixie": "3.13"}
DEFAULT_MIRROR = "http://deb.debian.org/debian"
DEFAULT_SECURITY = "http://deb.debian.org/debian-security"


def suite_for_python(python: str) -> str:
    for suite, version in DEBIAN_PYTHON.items():
        if version == python:
            return suite
    known = ", ".join(f"{p} ({s})" for s, p in DEBIAN_PYTHON.items())
    raise InvalidParameter(f"no Debian release ships Python {python}; choose one of {known}")


def apt_sources(
    suite: str, *, mirror: str | None = None, sources_dir: Path = Path("/etc/apt")
) -> list[str]:
    """One-line apt sources for ``suite``: ``mirror`` when given, else the host's own entries
    for that suite (its mirror is known to be reachable from here), else deb.debian.org."""
    if mirror:
        v.check_text("mirror", mirror)
        return [f"deb {mirror} {suite} main", f"deb {mirror} {suite}-updates main"]
    found = [
        line
        for line in _host_sources(sources_dir)
        if line.split()[2].split("/")[0].startswith(suite)
    ]
    if found:
        return found
    return [
        f"deb {DEFAULT_MIRROR} {suite} main",
        f"deb {DEFAULT_MIRROR} {suite}-updates main",
        f"deb {DEFAULT_SECURITY} {suite}-security main",
    ]


def _host_sources(root: Path) -> list[str]:
    """The host's ``deb`` entries (one-line and deb822 formats), main component only."""
    entries: list[str] = []
    files = [root / "sources.list", *sorted((root / "sources.list.d").glob("*"))]
    for path in files:
        if not path.is_file():
            continue
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                fields = dict(
                    (k.strip().lower(), val.strip())
                    for k, _, val in (
                        line.partition(":")
                        for line in stanza.splitlines()
                        if not line.startswith("#")
                    )
                    if k.strip()
                )
                if "deb" not in fields.get("types", "").split():
                    continue
                for uri in fields.get("uris", "").split():
                    for suite in fields.get("suites", "").split():
                        if "main" in fields.get("components", "").split():
                            entries.append(f"deb {uri} {suite} main")
        else:
            for line in text.splitlines():
                parts = re.sub(r"\[[^\]]*\]", "", line).split()
                if len(parts) >= 4 and parts[0] == "deb" and "main" in parts[3:]:
                    entries.append(f"deb {parts[1]} {parts[2]} main")
    return [e for e in entries if v.check_text("apt source", e)]


def build_base_image(
    tag: str = DEFAULT_BASE_TAG,
    *,
    python: str = "3.11",
    suite: str | None = None,
    mirror: str | None = None,
    packages: Sequence[str] = (),
    rebuild: bool = False,
    engine: DockerEngine | None = None,
    progress: Callable[[str], None] | None = None,
    environ: Mapping[str, str] | None = None,
    checks: Sequence[Check] = (),
) -> ImageInfo:
    """Make ``tag`` from Debian packages with mmdebstrap + ``docker import``.

    An existing ``tag`` is reused unless ``rebuild`` or it was made of another package list (a
    label records it): a base changes only when its recipe does, so every image built on it keeps
    its cached layers. ``packages`` adds Debian packages (e.g. libgomp1
    for scikit-learn) — the offline way to get system libraries into images.

    The tarball is imported untagged; the image gets ``tag`` only after Python, tini and every
    program in ``checks`` run in it (:mod:`modelyard.images.verify`). An existing tag that no
    longer passes those checks (an interrupted build of an older modelyard left it empty, say)
    is rebuilt with a message.
    """
    v.check_image_ref("base image tag", tag)
    suite = suite or suite_for_python(python)
    if DEBIAN_PYTHON.get(suite) not in (None, python):
        raise InvalidParameter(f"Debian {suite} ships Python {DEBIAN_PYTHON[suite]}, not {python}")
    wanted = [*BASE_PACKAGES, *(v.check_package("package", p) for p in packages)]
    engine = engine or DockerEngine.from_env(environ)
    engine.ping()
    recipe = ",".join(sorted(set(wanted)))
    all_checks = [PYTHON_CHECK, TINI_CHECK, *(tuple(c) for c in checks)]
    say = progress or (lambda _msg: None)
    if not rebuild and engine.image_exists(tag):
        existing = image_info(engine, tag)
        if (existing.labels or {}).get(PACKAGES_LABEL) != recipe:
            say(f"{tag} exists but was made of other packages than {recipe}; rebuilding it")
        elif (why := failed_check(engine, tag, all_checks)) is not None:
            say(f"{tag} exists but does not run ({why}); rebuilding it")
        else:
            return existing
    mmdebstrap = shutil.which("mmdebstrap")
    if mmdebstrap is None:
        raise ImageBuildFailed(
            "mmdebstrap is not installed: it makes the base image from Debian packages "
            "(apt-get install mmdebstrap, or run scripts/docker.sh)"
        )
    sources = apt_sources(suite, mirror=mirror)
    say(f"installing {', '.join(wanted)} from {sources[0].split()[1]} ({suite})")
    cmd = [
        mmdebstrap,
        "--variant=essential",
        f"--include={','.join(wanted)}",
        # Documentation and translations are dead weight in a container.
        "--dpkgopt=path-exclude=/usr/share/doc/*",
        "--dpkgopt=path-include=/usr/share/doc/*/copyright",
        "--dpkgopt=path-exclude=/usr/share/man/*",
        "--dpkgopt=path-exclude=/usr/share/locale/*",
        "--dpkgopt=path-exclude=/usr/share/info/*",
        '--customize-hook=rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/* "$1"/var/log/*',
        "--format=tar",
        suite,
        "-",
        *sources,
    ]
    changes = [
        "ENV LANG=C.UTF-8",
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        'CMD ["python3"]',
        f"LABEL {PACKAGES_LABEL}={recipe}",
    ]
    import_args = ["import"]
    for change in changes:
        import_args += ["--change", change]
    import_args.append("-")  # untagged: the tag comes after the checks pass
    started = time.perf_counter()
    env = {**os.environ, **(environ or {})}
    with subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
    ) as debootstrap:
        assert debootstrap.stdout is not None
        assert debootstrap.stderr is not None
        docker = subprocess.Popen(
            engine.command(import_args),
            stdin=debootstrap.stdout,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=engine.process_env(),
        )
        debootstrap.stdout.close()  # docker holds the pipe now; SIGPIPE reaches mmdebstrap
        err = debootstrap.stderr.read().decode(errors="replace")
        out, import_err = docker.communicate()
        code = debootstrap.wait()
    image_id = out.decode(errors="replace").strip() if docker.returncode == 0 else ""
    if code != 0:
        if image_id:  # docker imported whatever part of the tarball arrived: never keep it
            engine.run(["image", "rm", image_id], check=False)
        tail = "\n".join(f"  {line}" for line in err.strip().splitlines()[-15:])
        raise ImageBuildFailed(f"mmdebstrap failed (exit {code}) building {tag}:\n{tail}", err)
    if not image_id:
        raise ImageBuildFailed(
            f"docker import of {tag} failed: {import_err.decode(errors='replace').strip()}"
        )
    tag_verified(engine, image_id, (tag,), all_checks, what=f"base image {tag}")
    info = image_info(engine, tag, build_seconds=time.perf_counter() - started)
    say(f"built {tag} ({info.id[:19]}, {format_size(info.size)})")
    return info
