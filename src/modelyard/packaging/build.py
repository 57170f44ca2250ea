"""``modelyard build churn@4``: a model version becomes an image, recorded on the version."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelyard.images import DockerEngine, ImageInfo
    from modelyard.store.models_entities import ModelVersion
    from modelyard.workspace import Workspace


@dataclass(frozen=True)
class ModelImage:
    """A built model image: the version it holds, its tag and what the engine reports."""

    version: ModelVersion
    tag: str
    info: ImageInfo

    @property
    def id(self) -> str:
        return self.info.id

    @property
    def size(self) -> int:
        return self.info.size


def build_model_image(
    ref: str,
    *,
    workspace: Workspace | None = None,
    base_image: str | None = None,
    engine: DockerEngine | None = None,
    wheelhouse_dir: Path | None = None,
    progress: Callable[[str], None] | None = None,
    no_cache: bool = False,
) -> ModelImage:
    """Build ``modelyard/<name>:<version>`` for ``ref`` and record its id and size on the
    version, with a ``model_version -built_into-> image`` lineage arrow, and its CycloneDX
    SBOM (shipped in the image, stored with a ``model_version -has_sbom-> artifact`` arrow).

    ``no_cache`` rebuilds every layer (a cold build, for benchmarks and suspect caches).
    Nothing is recorded unless the build succeeds: a missing or corrupted artifact, a base
    image that does not exist or a package the wheelhouse lacks raises before that.
    """
    import tempfile
    from dataclasses import replace

    from modelyard.image_contract import SBOM_FILE
    from modelyard.images import DockerEngine, build_image, write_context
    from modelyard.images import validate as v
    from modelyard.images.wheelhouse import parse_wheel_filename
    from modelyard.packaging.dockerfile import default_base_image, plan_model_image
    from modelyard.packaging.sbom import debian_packages, make_sbom, record_sbom
    from modelyard.workspace import resolve as resolve_workspace

    ws = resolve_workspace(workspace)
    engine = engine or DockerEngine.from_env()
    engine.ping()  # before the export and wheel downloads: fail fast without an engine
    base = v.check_image_ref("base image", base_image or default_base_image(ws))
    _require_base(engine, base)
    plan = plan_model_image(
        ref, workspace=ws, base_image=base, wheelhouse_dir=wheelhouse_dir, progress=progress
    )
    version = plan.version
    wheels = {name: (plan.lock[name], w) for name, w in plan.wheelhouse.require(plan.lock).items()}
    runtime = plan.spec.runtime_wheel
    parsed = parse_wheel_filename(runtime.name) if runtime is not None else None
    if runtime is not None and parsed is not None:
        wheels[parsed[0]] = (parsed[1], runtime)
    sbom = make_sbom(
        version,
        wheels,
        debian_packages(engine, base),
        base_image=base,
    )
    with tempfile.TemporaryDirectory(prefix="modelyard-model-context-") as tmp:
        sbom_file = Path(tmp) / SBOM_FILE
        sbom_file.write_bytes(sbom)
        sbom_file.chmod(0o644)  # the image's unprivileged user reads it
        spec = replace(plan.spec, payload={**plan.spec.payload, SBOM_FILE: sbom_file})
        ctx = write_context(spec, Path(tmp) / "context", wheelhouse=plan.wheelhouse)
        info = build_image(ctx.path, plan.tag, engine=engine, progress=progress, no_cache=no_cache)
    record_sbom(ws, version, sbom)
    ws.store.models.set_image(
        version.name,
        version.version,
        image_id=info.id,
        image_digest=version.image_digest if version.image_id == info.id else None,
        image_size=info.size,
        image_ref=plan.tag,
    )
    ws.store.lineage.add("model_version", version.ref, "image", info.id, "built_into")
    return ModelImage(version=ws.store.models.get_version(version.name, version.version),
                      tag=plan.tag, info=info)  # fmt: skip


def _require_base(engine: DockerEngine, base: str) -> None:
    """A base the engine lacks and cannot pull is named before the build starts (the build's
    own error comes after the whole context was sent)."""
    from modelyard.errors import ImageBuildFailed

    if engine.image_exists(base):
        return
    proc = engine.run(["pull", base], check=False, timeout=300)
    if proc.returncode != 0:
        lines = proc.stderr.decode(errors="replace").strip().splitlines()
        reason = lines[-1] if lines else f"exit {proc.returncode}"
        raise ImageBuildFailed(
            f"base image {base} does not exist locally and cannot be pulled ({reason}); "
            "build one with 'modelyard base build' and pass --base-image, or set "
            "[images] base_image in modelyard.toml"
        )
