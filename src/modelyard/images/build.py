"""Build an image from a context folder, with progress, and the build log when it fails."""

from __future__ import annotations

import re
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelyard.errors import ImageBuildFailed, WheelhouseError
from modelyard.images import validate as v
from modelyard.images.context import ImageSpec, write_context
from modelyard.images.engine import DockerEngine
from modelyard.images.verify import entrypoint_checks, tag_verified
from modelyard.images.wheelhouse import Wheelhouse

_STEP = re.compile(r"^Step \d+/\d+ : ")
_NO_DIST = re.compile(r"No matching distribution found for (\S+)")
_PULL = re.compile(
    r"pull access denied|manifest unknown|not found: manifest|repository does not exist"
)


@dataclass(frozen=True)
class ImageInfo:
    """A built image. ``digest`` is the registry digest (``sha256:…``) once the image has been
    pushed or pulled; a local-only build has none, only its ``id`` (the config digest)."""

    id: str
    size: int
    tags: tuple[str, ...]
    digest: str | None = None
    labels: Mapping[str, str] | None = None
    build_seconds: float | None = None


def image_info(engine: DockerEngine, ref: str, *, build_seconds: float | None = None) -> ImageInfo:
    data = engine.inspect_image(ref)
    if data is None:
        raise ImageBuildFailed(f"image {ref} is not known to the engine at {engine.host}")
    return info_from_inspect(data, build_seconds=build_seconds)


def info_from_inspect(data: Mapping[str, Any], *, build_seconds: float | None = None) -> ImageInfo:
    digests = [d.split("@", 1)[1] for d in data.get("RepoDigests") or [] if "@" in d]
    config = data.get("Config") or {}
    return ImageInfo(
        id=str(data["Id"]),
        size=int(data.get("Size") or 0),
        tags=tuple(data.get("RepoTags") or ()),
        digest=digests[0] if digests else None,
        labels=dict(config.get("Labels") or {}),
        build_seconds=build_seconds,
    )


def build_image(
    context_dir: Path,
    tag: str,
    *,
    engine: DockerEngine | None = None,
    extra_tags: tuple[str, ...] = (),
    network: bool = False,
    no_cache: bool = False,
    progress: Callable[[str], None] | None = None,
) -> ImageInfo:
    """Build ``context_dir/Dockerfile`` as ``tag`` and describe the result.

    The build runs with ``--network none`` unless ``network`` is asked for (apt-get of extra
    system packages): the offline promise is enforced by the engine, not only by pip flags.
    ``progress`` receives each build step (``Step 3/14 : RUN …``) as it starts. A failure raises
    :class:`ImageBuildFailed` with the log's tail in the message and the whole log on ``.log``;
    a package pip cannot find offline raises :class:`WheelhouseError` naming it.

    The image is built untagged and gets ``tag`` (and ``extra_tags``) only once its entrypoint
    runs (see :mod:`modelyard.images.verify`): an interrupted or broken build never holds a tag.
    """
    engine = engine or DockerEngine.from_env()
    for ref in (tag, *extra_tags):
        v.check_image_ref("image tag", ref)
    if not (context_dir / "Dockerfile").is_file():
        raise ImageBuildFailed(f"{context_dir} has no Dockerfile")
    engine.ping()
    with tempfile.TemporaryDirectory(prefix="modelyard-build-") as tmp:
        iidfile = Path(tmp) / "iid"
        args = ["build", "--iidfile", str(iidfile), "--rm", "--force-rm"]
        if not network:
            args += ["--network", "none"]
        if no_cache:
            args.append("--no-cache")
        args.append(str(context_dir))

        def on_line(line: str) -> None:
            if progress is not None and _STEP.match(line):
                progress(line)

        started = time.perf_counter()
        code, lines = engine.stream(args, on_line=on_line)
        elapsed = time.perf_counter() - started
        image_id = iidfile.read_text().strip() if iidfile.is_file() else ""
    log = "\n".join(line for line in lines if not _is_cli_noise(line))
    if code != 0 or not image_id:
        raise _build_error(tag, log)
    entrypoint = ((engine.inspect_image(image_id) or {}).get("Config") or {}).get("Entrypoint")
    checks = entrypoint_checks(entrypoint)
    tag_verified(engine, image_id, (tag, *extra_tags), checks, what=f"image {tag}")
    return image_info(engine, image_id, build_seconds=elapsed)


def _is_cli_noise(line: str) -> bool:
    # The legacy builder's deprecation banner says nothing about this build.
    return line.startswith(
        (
            "DEPRECATED: The legacy builder",
            "            Install the buildx",
            "            https://docs.docker.com/go/buildx",
        )
    )


def _build_error(tag: str, log: str) -> ImageBuildFailed | WheelhouseError:
    missing = _NO_DIST.search(log)
    if missing is not None:
        err = WheelhouseError(
            f"building {tag}: no wheel for {missing.group(1)} in the build context's wheelhouse "
            "(a dependency the lock does not list?); add it to the lock and prepare the "
            "wheelhouse again"
        )
        return err
    if _PULL.search(log):
        base = re.search(r"^Step 1/\d+ : FROM (\S+)", log, re.M)
        name = base.group(1) if base else "the base image"
        return ImageBuildFailed(
            f"building {tag}: base image {name} does not exist locally and cannot be pulled; "
            "build one with 'modelyard base build' or choose another base image",
            log,
        )
    tail = "\n".join(f"  {line}" for line in log.strip().splitlines()[-20:])
    return ImageBuildFailed(f"building {tag} failed; last lines of the build log:\n{tail}", log)


def build_image_from_spec(
    spec: ImageSpec,
    tag: str,
    *,
    wheelhouse: Wheelhouse | None = None,
    engine: DockerEngine | None = None,
    context_dir: Path | None = None,
    extra_tags: tuple[str, ...] = (),
    progress: Callable[[str], None] | None = None,
) -> ImageInfo:
    """Render ``spec`` into a build context (a temporary folder unless ``context_dir``) and
    build it: the whole path from "what goes in" to an image, checks first."""
    if context_dir is not None:
        ctx = write_context(spec, context_dir, wheelhouse=wheelhouse)
        return build_image(
            ctx.path,
            tag,
            engine=engine,
            extra_tags=extra_tags,
            network=ctx.needs_network,
            progress=progress,
        )
    with tempfile.TemporaryDirectory(prefix="modelyard-context-") as tmp:
        ctx = write_context(spec, Path(tmp) / "context", wheelhouse=wheelhouse)
        return build_image(
            ctx.path,
            tag,
            engine=engine,
            extra_tags=extra_tags,
            network=ctx.needs_network,
            progress=progress,
        )
