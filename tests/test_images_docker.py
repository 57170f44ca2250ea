"""Images built by a real Docker engine: the Debian base image, and a small image installed
offline from a wheelhouse. Skips without an engine; fails under CI=true (scripts/docker.sh
starts one). The base image is built once and reused across sessions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from modelyard.errors import ImageBuildFailed, WheelhouseError
from modelyard.images import (
    DockerEngine,
    Healthcheck,
    ImageInfo,
    ImageSpec,
    Wheelhouse,
    build_image,
    build_image_from_spec,
)
from test_images_context import make_wheel

pytestmark = pytest.mark.docker

TINY_TAG = "modelyard-test/tiny:latest"


@pytest.fixture(scope="session")
def tiny_image(
    engine: DockerEngine, base_image: str, tmp_path_factory: pytest.TempPathFactory
) -> ImageInfo:
    root = tmp_path_factory.mktemp("tiny")
    house = Wheelhouse(root / "house")
    make_wheel(house.path, "tinypkg", "1.0", "VALUE = 41 + 1\n")
    (root / "main.py").write_text("import tinypkg\nprint('value', tinypkg.VALUE)\n")
    spec = ImageSpec(
        base_image=base_image,
        requirements={"tinypkg": "1.0"},
        payload={"main.py": root / "main.py"},
        labels={"io.modelyard.model": "tiny", "io.modelyard.version": "1"},
        title="tiny",
        version="1",
        revision="abc123",
        expose=(8080,),
        healthcheck=Healthcheck(command=("python", "-c", "import tinypkg")),
        cmd=("python", "main.py"),
    )
    # Kept afterwards: the next session's build of the same spec is all cache hits.
    return build_image_from_spec(spec, TINY_TAG, wheelhouse=house, engine=engine)


def _run(engine: DockerEngine, image: str, *args: str) -> str:
    proc = engine.run(["run", "--rm", "--network", "none", image, *args], timeout=60)
    return proc.stdout.decode().strip()


def test_base_image_runs_python(engine: DockerEngine, base_image: str) -> None:
    assert _run(engine, base_image, "python3", "-c", "print(1)") == "1"


def test_tiny_image_installs_offline_from_the_wheelhouse(
    engine: DockerEngine, tiny_image: ImageInfo
) -> None:
    assert _run(engine, TINY_TAG) == "value 42"
    assert tiny_image.id.startswith("sha256:")
    assert tiny_image.size > 0
    assert TINY_TAG in tiny_image.tags


def test_tiny_image_runs_as_non_root(engine: DockerEngine, tiny_image: ImageInfo) -> None:
    assert _run(engine, TINY_TAG, "python", "-c", "import os; print(os.getuid())") == "10001"


def test_tiny_image_carries_labels_healthcheck_and_port(
    engine: DockerEngine, tiny_image: ImageInfo
) -> None:
    raw = engine.run(["image", "inspect", TINY_TAG]).stdout
    config = json.loads(raw)[0]["Config"]
    labels = config["Labels"]
    assert labels["org.opencontainers.image.title"] == "tiny"
    assert labels["org.opencontainers.image.revision"] == "abc123"
    assert labels["io.modelyard.model"] == "tiny"
    assert labels["io.modelyard.version"] == "1"
    assert tiny_image.labels == labels
    assert config["Healthcheck"]["Test"] == ["CMD", "python", "-c", "import tinypkg"]
    assert "8080/tcp" in config["ExposedPorts"]
    assert config["User"] == "10001:10001"


def test_dependency_missing_from_the_wheelhouse_fails_naming_it(
    engine: DockerEngine, base_image: str, tmp_path: Path
) -> None:
    """The lock lists a package whose own dependency has no wheel: pip, offline inside the
    build, cannot find it, and the error says which one."""
    house = Wheelhouse(tmp_path / "house")
    make_wheel(house.path, "needy", "1.0", "", requires=("ghostdep>=2",))
    spec = ImageSpec(base_image=base_image, requirements={"needy": "1.0"})
    with pytest.raises(WheelhouseError, match=r"no wheel for ghostdep>=2"):
        build_image_from_spec(spec, "modelyard-test/needy:latest", wheelhouse=house, engine=engine)
    assert not engine.image_exists("modelyard-test/needy:latest")


def test_build_has_no_network(engine: DockerEngine, base_image: str, tmp_path: Path) -> None:
    """The offline promise is kept by the engine: a RUN in an image build sees no network."""
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    probe = "import socket; socket.create_connection(('1.1.1.1', 53), 3)"
    (ctx / "Dockerfile").write_text(f'FROM {base_image}\nRUN python3 -c "{probe}"\n')
    with pytest.raises(ImageBuildFailed, match="Network is unreachable|OSError"):
        build_image(ctx, "modelyard-test/net:latest", engine=engine)
