"""An image gets its tag only after its programs run (issue: an interrupted base or proxy build
left an empty image under the final tag, reused forever).

mmdebstrap is replaced by a script on PATH that plays back a tarball — empty, truncated, or a
real root filesystem exported from the base image — so each failure costs seconds, not a
Debian bootstrap. The Docker engine, ``docker import`` and ``docker build`` are real.
"""

from __future__ import annotations

import os
import stat
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.errors import ImageBuildFailed
from modelyard.images import DockerEngine, build_base_image, build_image
from modelyard.images.base import BASE_PACKAGES, PACKAGES_LABEL

pytestmark = pytest.mark.docker


@pytest.fixture
def tag(engine: DockerEngine) -> Iterator[str]:
    name = f"modelyard-test/atomic-{uuid.uuid4().hex[:10]}:1"
    yield name
    engine.run(["image", "rm", "-f", name], check=False)


@pytest.fixture(scope="session")
def base_rootfs(
    engine: DockerEngine, base_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """The base image's root filesystem as a tarball (what mmdebstrap would print)."""
    out = tmp_path_factory.mktemp("rootfs") / "rootfs.tar"
    cid = engine.run(["create", base_image]).stdout.decode().strip()
    try:
        engine.run(["export", "-o", str(out), cid], timeout=300)
    finally:
        engine.run(["rm", "-f", cid], check=False)
    return out


def fake_mmdebstrap(monkeypatch: pytest.MonkeyPatch, folder: Path, script: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    exe = folder / "mmdebstrap"
    exe.write_text("#!/bin/sh\n" + script + "\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")


def images_named(engine: DockerEngine, tag: str) -> list[str]:
    out = engine.run(["images", "-q", tag.split(":")[0]]).stdout.decode().split()
    return out


def test_an_empty_import_never_gets_the_tag(
    engine: DockerEngine, tag: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """mmdebstrap "succeeds" with an empty tarball: docker imports a 0-byte image, which does
    not run Python — the tag is never created, and the untagged image is removed."""
    fake_mmdebstrap(monkeypatch, tmp_path / "bin", "tar cf - -T /dev/null")
    before = set(engine.run(["images", "-q", "--filter", "dangling=true"]).stdout.split())
    with pytest.raises(ImageBuildFailed, match=r"does not run .*not tagged"):
        build_base_image(tag, engine=engine)
    assert not engine.image_exists(tag)
    after = set(engine.run(["images", "-q", "--filter", "dangling=true"]).stdout.split())
    assert after <= before, "the rejected import was left behind"


def test_an_interrupted_bootstrap_never_gets_the_tag(
    engine: DockerEngine, tag: str, base_rootfs: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """mmdebstrap dies half-way through the tarball: the build fails with its exit status and
    whatever docker imported of the first half holds no tag."""
    fake_mmdebstrap(
        monkeypatch,
        tmp_path / "bin",
        f"head -c 4000000 '{base_rootfs}'; echo 'E: interrupted' >&2; exit 9",
    )
    with pytest.raises(ImageBuildFailed, match=r"mmdebstrap failed \(exit 9\)"):
        build_base_image(tag, engine=engine)
    assert not engine.image_exists(tag)


@pytest.mark.slow
def test_an_existing_tag_that_does_not_run_is_rebuilt(
    engine: DockerEngine, tag: str, base_rootfs: Path, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    """What an older modelyard left behind: an empty image under the tag, with the right
    recipe label. The next build notices it cannot run Python and rebuilds it."""
    recipe = ",".join(sorted(set(BASE_PACKAGES)))
    empty = subprocess.run(["tar", "cf", "-", "-T", "/dev/null"], capture_output=True).stdout
    engine.run(["import", "--change", f"LABEL {PACKAGES_LABEL}={recipe}", "-", tag], input=empty)
    assert engine.image_exists(tag)

    fake_mmdebstrap(monkeypatch, tmp_path / "bin", f"cat '{base_rootfs}'")
    said: list[str] = []
    info = build_base_image(tag, engine=engine, progress=said.append)
    assert any("exists but does not run" in line and "rebuilding" in line for line in said)
    assert info.build_seconds is not None
    run = engine.run(["run", "--rm", "--network", "none", tag, "python3", "-c", "print(6*7)"])
    assert run.stdout.decode().strip() == "42"
    # A second call reuses the now-working tag.
    assert build_base_image(tag, engine=engine).build_seconds is None


def test_a_built_image_whose_entrypoint_is_missing_gets_no_tag(
    engine: DockerEngine, base_image: str, tag: str, tmp_path: Path
) -> None:
    """``docker build`` succeeds, but the entrypoint's module does not exist in the image: the
    image is not tagged (a step or model image that cannot start must never be reused)."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f'FROM {base_image}\nENTRYPOINT ["python3", "-m", "modelyard_no_such_module"]\n'
    )
    with pytest.raises(ImageBuildFailed, match=r"does not run .*find_spec"):
        build_image(ctx, tag, engine=engine)
    assert not engine.image_exists(tag)


def test_a_built_image_whose_entrypoint_runs_is_tagged(
    engine: DockerEngine, base_image: str, tag: str, tmp_path: Path
) -> None:
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f'FROM {base_image}\nENTRYPOINT ["python3", "-m", "json.tool"]\n'
    )
    info = build_image(ctx, tag, engine=engine, extra_tags=(tag.replace(":1", ":extra"),))
    assert tag in info.tags
    engine.run(["image", "rm", "-f", tag.replace(":1", ":extra")], check=False)
