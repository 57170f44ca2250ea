"""Image machinery without an engine: field validation, the rendered Dockerfile, the
wheelhouse, modelyard's own wheel, and the error when no engine answers."""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import zipfile
from pathlib import Path

import pytest
from click.testing import CliRunner

import modelyard
import modelyard.images as images
from modelyard.cli.main import cli
from modelyard.errors import EngineUnavailable, UnsafeDockerfileValue, WheelhouseError
from modelyard.images import (
    DockerEngine,
    Healthcheck,
    ImageSpec,
    Wheelhouse,
    build_modelyard_wheel,
    lock_from_environment,
    render_dockerfile,
    write_context,
)
from modelyard.images.wheelhouse import package_files

PACKAGE_DIR = Path(modelyard.__file__).resolve().parent


def make_wheel(
    folder: Path, name: str, version: str, source: str, requires: tuple[str, ...] = ()
) -> Path:
    """A minimal, valid pure-Python wheel, made on the spot (no network, no build backend)."""
    info = f"{name}-{version}.dist-info"
    meta = f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
    meta += "".join(f"Requires-Dist: {r}\n" for r in requires)
    files = {
        f"{name}/__init__.py": source.encode(),
        f"{info}/METADATA": meta.encode(),
        f"{info}/WHEEL": b"Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = [
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}"
        for path, data in files.items()
    ]
    files[f"{info}/RECORD"] = ("\n".join([*record, f"{info}/RECORD,,"]) + "\n").encode()
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for path, data in files.items():
            # fixed timestamps: the same wheel has the same bytes, so image builds hit the cache
            zf.writestr(zipfile.ZipInfo(path, date_time=(1980, 1, 1, 0, 0, 0)), data)
    return wheel


# -- validation: every field that reaches the Dockerfile -------------------------------------

BAD_VALUES = ["ok\nRUN rm -rf /", "$(curl evil)", "a;b", "`id`"]


@pytest.mark.parametrize("bad", BAD_VALUES)
def test_base_image_with_injection_is_refused(bad: str) -> None:
    with pytest.raises(UnsafeDockerfileValue, match=r"base image .* refused|base image"):
        render_dockerfile(ImageSpec(base_image=f"debian{bad}"))


@pytest.mark.parametrize("bad", BAD_VALUES)
def test_env_value_with_injection_is_refused(bad: str) -> None:
    with pytest.raises(UnsafeDockerfileValue, match="env MODE") as err:
        render_dockerfile(ImageSpec(env={"MODE": bad}))
    assert "refused" in str(err.value)


@pytest.mark.parametrize("bad", BAD_VALUES)
def test_label_value_with_injection_is_refused(bad: str) -> None:
    with pytest.raises(UnsafeDockerfileValue, match=r"label io\.modelyard\.run"):
        render_dockerfile(ImageSpec(labels={"io.modelyard.run": bad}))


@pytest.mark.parametrize("bad", ["libgomp1;curl", "libgomp1\n", "$(x)", "lib`x`"])
def test_system_package_with_injection_is_refused(bad: str) -> None:
    with pytest.raises(UnsafeDockerfileValue, match="system package"):
        render_dockerfile(ImageSpec(system_packages=("python3", bad)))


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        (ImageSpec(env={"BAD NAME": "x"}), "env name"),
        (ImageSpec(labels={"Io.Bad Key": "x"}), "label key"),
        (ImageSpec(user="root"), "user"),
        (ImageSpec(entrypoint=("python", "-c", "1;2")), "entrypoint"),
        (ImageSpec(healthcheck=Healthcheck(command=("sh", "-c", "a\nb"))), "healthcheck"),
        (ImageSpec(expose=(70000,)), "expose port"),
    ],
)
def test_other_fields_are_checked(spec: ImageSpec, field: str) -> None:
    with pytest.raises(UnsafeDockerfileValue, match=field):
        render_dockerfile(spec)


def test_payload_path_cannot_escape(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    spec = ImageSpec(payload={"../etc/passwd": tmp_path / "f"})
    with pytest.raises(UnsafeDockerfileValue, match="payload path"):
        write_context(spec, tmp_path / "ctx")


# -- the rendered Dockerfile -------------------------------------------------------------------


def test_dockerfile_layers_are_ordered_for_reuse(tmp_path: Path) -> None:
    runtime = make_wheel(tmp_path / "rt", "runtimepkg", "1.0", "")
    spec = ImageSpec(
        base_image="registry.local:5000/team/base:py3.11@sha256:" + "a" * 64,
        requirements={"tinypkg": "1.0"},
        runtime_wheel=runtime,
        runtime_extras=("serve",),
        payload={"model": tmp_path},
        env={"PRICE": 'costs $5 "net"'},
        labels={"io.modelyard.model": "churn"},
        title="churn",
        version="4",
        expose=(8080,),
        healthcheck=Healthcheck(command=("python", "-c", "print(1)")),
        entrypoint=("python", "-m", "app"),
    )
    text = render_dockerfile(spec)
    order = [
        "FROM registry.local:5000/team/base:py3.11@sha256:",
        "pip install --no-index --find-links /tmp/modelyard-wheels",
        "COPY --from=deps /opt/modelyard/venv /opt/modelyard/venv",
        "COPY wheels/runtime/",
        "COPY payload/ /opt/modelyard/app/",
        "EXPOSE 8080",
        "HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 "
        'CMD ["python", "-c", "print(1)"]',
        "LABEL ",
        "USER 10001:10001",
        'ENTRYPOINT ["python", "-m", "app"]',
    ]
    positions = [text.index(marker) for marker in order]
    assert positions == sorted(positions)
    assert "runtimepkg-1.0-py3-none-any.whl[serve]" in text
    # $ and quotes in values are escaped, so the builder cannot expand them
    assert 'PRICE="costs \\$5 \\"net\\""' in text
    assert 'org.opencontainers.image.title="churn"' in text
    assert 'io.modelyard.model="churn"' in text
    # no apt-get (and so no network) unless system packages are asked for
    assert "apt-get" not in text
    assert ImageSpec(system_packages=("libgomp1",)).needs_network


def test_write_context_lays_out_wheels_lock_and_payload(tmp_path: Path) -> None:
    house = Wheelhouse(tmp_path / "house")
    make_wheel(house.path, "tinypkg", "1.0", "VALUE = 1\n")
    (tmp_path / "app.py").write_text("print('hi')\n")
    spec = ImageSpec(requirements={"TinyPkg": "1.0"}, payload={"bin/app.py": tmp_path / "app.py"})
    ctx = write_context(spec, tmp_path / "ctx", wheelhouse=house)
    assert (ctx.path / "wheels/deps/tinypkg-1.0-py3-none-any.whl").is_file()
    lock = (ctx.path / "wheels/deps/requirements.lock").read_text().splitlines()
    assert lock[-1] == "TinyPkg==1.0"
    assert (ctx.path / "payload/bin/app.py").read_text() == "print('hi')\n"
    assert (ctx.path / "Dockerfile").read_text() == ctx.dockerfile
    assert ctx.labels["org.opencontainers.image.created"].endswith("Z")


# -- the wheelhouse ------------------------------------------------------------------------------


def test_wheelhouse_missing_package_is_named(tmp_path: Path) -> None:
    house = Wheelhouse(tmp_path / "house")
    make_wheel(house.path, "tinypkg", "1.0", "")
    spec = ImageSpec(requirements={"tinypkg": "1.0", "absentpkg": "2.3.4", "tiny_pkg2": "1"})
    with pytest.raises(WheelhouseError, match=r"no wheel for absentpkg==2\.3\.4, tiny_pkg2==1"):
        write_context(spec, tmp_path / "ctx", wheelhouse=house)
    assert not (tmp_path / "ctx").exists()  # checked before anything was written


def test_wheelhouse_matches_names_and_versions_canonically(tmp_path: Path) -> None:
    house = Wheelhouse(tmp_path)
    wheel = make_wheel(tmp_path, "Zope_Interface", "6.0", "")
    assert house.find("zope.interface", "6.0.0") == wheel
    assert house.missing({"zope-interface": "6.0", "zope-interface2": "6.0"}) == [
        "zope-interface2==6.0"
    ]


def test_prepare_wheelhouse_is_a_no_op_when_warm(tmp_path: Path) -> None:
    make_wheel(tmp_path, "tinypkg", "1.0", "")
    # a pip that would fail if it were called: nothing may be fetched for a warm wheelhouse
    house = images.prepare_wheelhouse({"tinypkg": "1.0"}, tmp_path, pip=("false",))
    assert house.require({"tinypkg": "1.0"})["tinypkg"].name == "tinypkg-1.0-py3-none-any.whl"


def test_lock_from_environment_pins_installed_versions() -> None:
    lock = lock_from_environment(["click"])
    assert lock == {"click": importlib.metadata.version("click")}


def test_modelyard_wheel_is_complete_and_reproducible(tmp_path: Path) -> None:
    first = build_modelyard_wheel(tmp_path)
    data = first.read_bytes()
    first.unlink()
    again = build_modelyard_wheel(tmp_path)
    assert again == first
    assert again.read_bytes() == data  # same code → same bytes → cached image layer
    with zipfile.ZipFile(again) as zf:
        names = set(zf.namelist())
        meta = zf.read("modelyard-0.1.0.dist-info/METADATA").decode()
    assert {"modelyard/__init__.py", "modelyard/images/context.py"} <= names
    assert "modelyard-0.1.0.dist-info/RECORD" in names
    assert "Requires-Dist: sqlalchemy" in meta
    shipped = {f"modelyard/{p.relative_to(PACKAGE_DIR).as_posix()}" for p in _tracked_files()}
    assert shipped <= names  # every file the package ships: the dashboard, migrations, py.typed


def _tracked_files() -> list[Path]:
    import subprocess

    listed = subprocess.run(
        ["git", "ls-files", "-z", "."], cwd=PACKAGE_DIR, capture_output=True, check=False
    )
    if listed.returncode != 0:
        pytest.skip("not a git checkout: cannot list the package's tracked files")
    return [PACKAGE_DIR / name for name in listed.stdout.decode().split("\0") if name]


def test_modelyard_wheel_leaves_out_what_a_checkout_collects(tmp_path: Path) -> None:
    """A developer's .env, swap files and notes next to the code must not reach model images."""
    package = tmp_path / "modelyard"
    for name in ("__init__.py", "server/static/index.html", "py.typed", "store/script.py.mako"):
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text("ok")
    for name in (".env", "notes.txt", "deploy/.idea/workspace.py", ".cache/x.py", "app.py.swp"):
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text("SECRET")
    (package / "__pycache__").mkdir()
    (package / "__pycache__" / "x.py").write_text("SECRET")
    found = {p.relative_to(package).as_posix() for p in package_files(package)}
    assert found == {"__init__.py", "server/static/index.html", "py.typed", "store/script.py.mako"}


# -- the engine ------------------------------------------------------------------------------------


def test_unreachable_engine_names_its_socket(tmp_path: Path) -> None:
    socket = f"unix://{tmp_path}/no-engine.sock"
    engine = DockerEngine.from_env({"DOCKER_HOST": socket, "PATH": "/usr/local/bin:/usr/bin:/bin"})
    with pytest.raises(EngineUnavailable, match=f"no Docker engine reachable at {socket}"):
        engine.ping()


def test_missing_docker_cli_names_the_socket(tmp_path: Path) -> None:
    engine = DockerEngine.from_env({"PATH": str(tmp_path)})
    with pytest.raises(EngineUnavailable, match=r"unix:///var/run/docker\.sock.*not installed"):
        engine.ping()


def test_base_build_cli_rejects_unknown_python() -> None:
    result = CliRunner().invoke(cli, ["base", "build", "--python", "3.10"])
    assert result.exit_code == 2
    assert "no Debian release ships Python 3.10" in result.output


def test_base_build_cli_without_engine_fails_naming_socket(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/gone.sock")
    result = CliRunner().invoke(cli, ["base", "build"])
    assert result.exit_code == 1
    assert f"no Docker engine reachable at unix://{tmp_path}/gone.sock" in result.output


def test_public_api_is_exported() -> None:
    import pkgutil

    exported = {name for name in dir(images) if not name.startswith("_")}
    # Submodules appear as attributes once any test imported them: not part of the API.
    modules = {m.name for m in pkgutil.iter_modules(images.__path__)} | {"annotations"}
    assert exported - modules == set(images.__all__)
