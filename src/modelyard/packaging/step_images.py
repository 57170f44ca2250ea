"""``modelyard pipeline build-images PIPELINE.py --registry HOST[/PREFIX]``: the images of the
steps that have requirements of their own, built as the docker runner builds them, pushed, and
recorded by digest for ``pipeline compile --target argo|kubeflow``
(:mod:`modelyard.pipeline.step_images`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from modelyard.errors import RegistryError

if TYPE_CHECKING:
    from modelyard.images import DockerEngine
    from modelyard.workspace import Workspace


@dataclass(frozen=True)
class PushedStepImage:
    steps: tuple[str, ...]
    requirements: tuple[str, ...]
    local: str  # modelyard-step/<workspace>:<hash>, as the docker runner tags it
    ref: str  # REPO@sha256:...: what the compiled pipelines name


def build_step_images(
    pipeline_file: Path,
    registry: str,
    *,
    workspace: Workspace,
    pipeline_name: str | None = None,
    engine: DockerEngine | None = None,
    username: str | None = None,
    password: str | None = None,
    attempts: int = 4,
    sleep: Callable[[float], None] = time.sleep,
    progress: Callable[[str], None] | None = None,
) -> list[PushedStepImage]:
    """Build each distinct image of the steps with ``requirements`` and no ``image`` (one per
    set of requirements), push it as ``REGISTRY/modelyard-step/<workspace>:<hash>`` and record
    ``REPO@DIGEST`` under the image's key. Steps of the shared image, or with an image of
    their own, are left alone."""
    from modelyard.packaging.push import push_image, registry_repository
    from modelyard.pipeline.graph import build_graph
    from modelyard.pipeline.loader import load_pipeline
    from modelyard.pipeline.runners.docker import DockerRunner, build_step_image
    from modelyard.pipeline.step_images import (
        own_requirements,
        record_pushed,
        step_environments,
        step_image_key,
    )

    if password is not None and not username:
        raise RegistryError("a password was given without a user name (--username)")
    registry_repository(registry, "modelyard-step")  # a bad registry fails before any build
    graph = build_graph(load_pipeline(pipeline_file, pipeline_name))
    groups: dict[tuple[str, ...], list[str]] = {}
    for name, env in step_environments(workspace, graph).items():
        if env.image is None and env.requirements:
            groups.setdefault(own_requirements(env.requirements), []).append(name)
    if not groups:
        return []
    runner = DockerRunner.from_workspace(workspace)
    eng = engine or runner.engine
    eng.ping()
    out = []
    for wanted, steps in groups.items():
        key = step_image_key(pipeline_file, runner.base_image, wanted)  # before the build reads
        local = build_step_image(
            workspace.root,
            pipeline_file,
            engine=eng,
            base_image=runner.base_image,
            requirements=wanted,
            wheelhouse_dir=runner.wheelhouse_dir,
            progress=progress,
        )
        name, _, tag = local.rpartition(":")
        repo = registry_repository(registry, name)
        digest = push_image(
            eng,
            local,
            repo,
            (f"{repo}:{tag}",),
            username=username,
            password=password,
            attempts=attempts,
            sleep=sleep,
        )
        ref = f"{repo}@{digest}"
        record_pushed(workspace, key, ref, steps, wanted)
        out.append(PushedStepImage(tuple(steps), wanted, local, ref))
    return out
