"""Model images built by a real Docker engine, and pushed to the real registries of
scripts/registry.sh (open on :5000, htpasswd on :5001). Skips without them; fails under CI.

The images are built once per session; Docker's cache keeps the next session's builds short.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from _deploy_helpers import register_churn
from conftest import OPEN_REGISTRY, registry_up, require_service
from modelyard.cli.main import cli
from modelyard.errors import RegistryError
from modelyard.images import DEFAULT_BASE_TAG, DockerEngine
from modelyard.workspace import Workspace

pytest.importorskip("sklearn")
pytestmark = pytest.mark.docker

AUTH_REGISTRY = "127.0.0.1:5001"


@pytest.fixture(scope="module")
def built(
    engine: DockerEngine, base_image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Workspace, dict[str, float]]]:
    """A workspace with churn@1 and churn@2 built through the CLI (timed)."""
    root = tmp_path_factory.mktemp("pkg") / "ws"
    ws, _ = Workspace.init(root, environ={})
    register_churn(ws, 3)
    runner = CliRunner()
    seconds = {}
    for ref in ("churn@1", "churn@2"):
        started = time.perf_counter()
        result = runner.invoke(cli, ["-C", str(root), "build", ref, "--base-image", base_image])
        seconds[ref] = time.perf_counter() - started
        assert result.exit_code == 0, result.output
        number = ref.split("@")[1]
        assert re.search(rf"^Built modelyard/churn:{number} for {ref} \(sha256:", result.output,
                         re.M)  # fmt: skip
    yield ws, seconds
    ws.close()


def test_image_is_labelled_unprivileged_and_recorded(
    built: tuple[Workspace, dict[str, float]], engine: DockerEngine
) -> None:
    ws, _ = built
    version = ws.store.models.get_version("churn", 1)
    assert version.image_id
    assert version.image_id.startswith("sha256:")
    assert version.image_ref == "modelyard/churn:1"
    assert version.image_size
    assert version.image_size > 50_000_000
    data = engine.inspect_image("modelyard/churn:1")
    assert data is not None
    assert data["Id"] == version.image_id
    config = data["Config"]
    labels = config["Labels"]
    assert labels["io.modelyard.model"] == "churn"
    assert labels["io.modelyard.version"] == "1"
    assert labels["io.modelyard.run"] == version.run_id
    assert labels["io.modelyard.model-digest"] == version.digest
    assert labels["io.modelyard.signature"].startswith("sha256:")
    assert "io.modelyard.datasets" in labels
    assert labels["org.opencontainers.image.title"] == "churn"
    assert labels["org.opencontainers.image.version"] == "1"
    assert re.match(r"\d{4}-\d\d-\d\dT", labels["org.opencontainers.image.created"])
    assert config["User"] == "10001:10001"
    assert "8080/tcp" in config["ExposedPorts"]
    assert "/v2/health/ready" in " ".join(config["Healthcheck"]["Test"])
    assert config["Entrypoint"][:3] == ["python", "-m", "modelyard.serving"]
    # Only what serving needs: the store and CLI libraries are not in the image.
    proc = engine.run(
        [
            "run",
            "--rm",
            "--network",
            "none",
            "--entrypoint",
            "python",
            "modelyard/churn:1",
            "-c",
            "import importlib.util as u; print([m for m in "
            "('sqlalchemy', 'rich', 'alembic', 'sklearn') if u.find_spec(m)])",
        ],  # fmt: skip
        timeout=60,
    )
    assert proc.stdout.decode().strip() == "['sklearn']"
    result = CliRunner().invoke(cli, ["-C", str(ws.root), "lineage", "churn@1"])
    assert f"built_into → image modelyard/churn:1 {version.image_id[:19]}" in result.output


def test_sbom_is_recorded_shipped_valid_and_complete(
    built: tuple[Workspace, dict[str, float]], engine: DockerEngine, base_image: str,
    tmp_path: Path,
) -> None:  # fmt: skip
    """The build's CycloneDX SBOM passes the library's strict schema validator, names every
    locked package with its wheel's sha256 and every Debian package of the base, is the file
    inside the image and is what ``modelyard sbom`` prints."""
    import hashlib

    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    from modelyard.images.wheelhouse import Wheelhouse, canonical_name, default_wheelhouse_dir
    from modelyard.packaging import serving_lock

    ws, _ = built
    runner = CliRunner()
    printed = runner.invoke(cli, ["-C", str(ws.root), "sbom", "churn@1"])
    assert printed.exit_code == 0, printed.output
    out = tmp_path / "churn.cdx.json"
    written = runner.invoke(cli, ["-C", str(ws.root), "sbom", "churn@1", "-o", str(out)])
    assert written.exit_code == 0, written.output
    text = out.read_text()
    assert printed.stdout.strip() == text.strip()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    doc = json.loads(text)
    assert doc["bomFormat"] == "CycloneDX"
    assert doc["metadata"]["component"]["name"] == "churn"
    by_purl = {c["purl"]: c for c in doc["components"]}
    version = ws.store.models.get_version("churn", 1)
    lock = serving_lock(ws, version)
    house = Wheelhouse(default_wheelhouse_dir())
    for name, pkg_version in lock.items():
        entry = by_purl[f"pkg:pypi/{canonical_name(name)}@{pkg_version}"]
        wheel = house.find(name, pkg_version)
        assert wheel is not None
        sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
        assert entry["hashes"] == [{"alg": "SHA-256", "content": sha}], name
    assert any(p.startswith("pkg:pypi/modelyard@") for p in by_purl)  # the runtime wheel
    dpkg = engine.run(
        ["run", "--rm", "--network", "none", "--entrypoint", "dpkg-query", base_image,
         "-W", "-f", "${Package} ${Version}\\n"],
        timeout=60,
    ).stdout.decode().split("\n")  # fmt: skip
    debian = dict(line.split(" ", 1) for line in dpkg if line.strip())
    assert len(debian) > 20
    assert "libc6" in debian
    listed = {c["name"]: c["version"] for c in doc["components"] if "pkg:deb/" in c["purl"]}
    assert listed == debian
    inside = engine.run(
        ["run", "--rm", "--network", "none", "--entrypoint", "cat", "modelyard/churn:1",
         "/opt/modelyard/app/sbom.cdx.json"],
        timeout=60,
    ).stdout  # fmt: skip
    assert inside == out.read_bytes()
    edges = [e for e in ws.store.lineage.edges_from("model_version", "churn@1")
             if e.relation == "has_sbom"]  # fmt: skip
    assert [ws.artifacts.get_bytes(e.target_id) for e in edges] == [inside]
    missing = runner.invoke(cli, ["-C", str(ws.root), "sbom", "churn@3"])
    assert missing.exit_code != 0
    assert "churn@3 has no SBOM yet" in missing.output


def test_a_new_version_adds_one_layer_and_builds_fast(
    built: tuple[Workspace, dict[str, float]], engine: DockerEngine
) -> None:
    _, seconds = built
    one = (engine.inspect_image("modelyard/churn:1") or {})["RootFS"]["Layers"]
    two = (engine.inspect_image("modelyard/churn:2") or {})["RootFS"]["Layers"]
    assert len(one) == len(two)
    assert one[:-1] == two[:-1]  # base, dependencies and runtime are shared
    assert one[-1] != two[-1]  # only the model layer differs
    assert seconds["churn@2"] < 30, seconds


def test_dockerfile_writes_a_self_contained_context(
    built: tuple[Workspace, dict[str, float]], tmp_path: Path
) -> None:
    ws, _ = built
    out = tmp_path / "ctx"
    result = CliRunner().invoke(cli, ["-C", str(ws.root), "dockerfile", "churn@2", "-o", str(out)])
    assert result.exit_code == 0, result.output
    text = (out / "Dockerfile").read_text()
    assert "FROM python:3.11-slim AS deps" in text  # the documented default
    assert (out / "payload" / "model" / "modelyard-model.json").is_file()
    lock = (out / "wheels" / "deps" / "requirements.lock").read_text()
    assert "scikit-learn==" in lock
    assert "sqlalchemy" not in lock.lower()
    wheels = {p.name.split("-")[0].lower() for p in (out / "wheels" / "deps").glob("*.whl")}
    assert "scikit_learn" in wheels


def test_bad_inputs_fail_before_anything_is_recorded(
    built: tuple[Workspace, dict[str, float]],
) -> None:
    ws, _ = built
    runner = CliRunner()
    base = ["-C", str(ws.root), "build"]
    # A corrupted, then a missing, artifact: a clear error, and no image on the version.
    version = ws.store.models.get_version("churn", 3)
    manifest = ws.artifacts.read_manifest(version.digest)
    blob = ws.artifacts.path(manifest.entries[0].digest)
    os.chmod(blob, 0o644)
    blob.write_bytes(b"tampered")
    result = runner.invoke(cli, [*base, "churn@3", "--base-image", DEFAULT_BASE_TAG])
    assert result.exit_code == 1
    assert "sha256:" in result.output
    blob.unlink()
    result = runner.invoke(cli, [*base, "churn@3", "--base-image", DEFAULT_BASE_TAG])
    assert result.exit_code == 1
    assert "is not in the artifact store" in result.output
    result = runner.invoke(cli, [*base, "churn@3", "--base-image", "evil;rm -rf /"])
    assert result.exit_code == 2
    assert "refused" in result.output
    result = runner.invoke(cli, [*base, "churn@3", "--base-image", f"{OPEN_REGISTRY}/nope:1"])
    assert result.exit_code == 1
    assert f"base image {OPEN_REGISTRY}/nope:1 does not exist locally" in result.output
    assert ws.store.models.get_version("churn", 3).image_id is None


# -- registries ------------------------------------------------------------------------------


def _tags(host: str, repo: str) -> list[str]:
    with urllib.request.urlopen(f"http://{host}/v2/{repo}/tags/list", timeout=5) as resp:
        return sorted(json.loads(resp.read())["tags"])


def test_push_to_an_open_registry_records_the_remote_digest(
    built: tuple[Workspace, dict[str, float]], engine: DockerEngine
) -> None:
    require_service(registry_up(OPEN_REGISTRY), f"no registry on {OPEN_REGISTRY}")
    ws, _ = built
    result = CliRunner().invoke(
        cli, ["-C", str(ws.root), "push", "churn@1", "--registry", f"{OPEN_REGISTRY}/test"]
    )
    assert result.exit_code == 0, result.output
    version = ws.store.models.get_version("churn", 1)
    short = version.digest.split(":")[1][:12]
    assert f"Pushed {OPEN_REGISTRY}/test/churn:1" in result.output
    assert f"Pushed {OPEN_REGISTRY}/test/churn:sha-{short}" in result.output
    assert version.image_digest
    assert version.image_digest.startswith("sha256:")
    assert version.image_ref == f"{OPEN_REGISTRY}/test/churn@{version.image_digest}"
    assert {"1", f"sha-{short}"} <= set(_tags(OPEN_REGISTRY, "test/churn"))
    # The recorded digest is the registry's manifest digest.
    req = urllib.request.Request(
        f"http://{OPEN_REGISTRY}/v2/test/churn/manifests/1",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(req, timeout=5) as resp:
        assert resp.headers["Docker-Content-Digest"] == version.image_digest
    # The SBOM is pushed beside it (distribution 2.8: under the sha256-<hex>.sbom tag).
    sbom_tag = version.image_digest.replace(":", "-") + ".sbom"
    assert sbom_tag in _tags(OPEN_REGISTRY, "test/churn")
    assert f"Pushed the SBOM as {OPEN_REGISTRY}/test/churn:{sbom_tag}" in result.output


def test_push_with_a_password_on_stdin_and_a_wrong_one(
    built: tuple[Workspace, dict[str, float]],
) -> None:
    require_service(registry_up(AUTH_REGISTRY), f"no registry on {AUTH_REGISTRY}")
    ws, _ = built
    password = os.environ.get("REGISTRY_TEST_PASSWORD", "modelyard-test-password")
    args = ["-C", str(ws.root), "push", "churn@2", "--registry", f"{AUTH_REGISTRY}/team",
            "--username", "modelyard", "--password-stdin"]  # fmt: skip
    runner = CliRunner()
    result = runner.invoke(cli, args, input="not-the-password\n")
    assert result.exit_code == 1
    assert "refused the credentials of user 'modelyard'" in result.output
    assert "not-the-password" not in result.output
    assert ws.store.models.get_version("churn", 2).image_ref == "modelyard/churn:2"
    result = runner.invoke(cli, args, input=password + "\n")
    assert result.exit_code == 0, result.output
    assert password not in result.output
    version = ws.store.models.get_version("churn", 2)
    assert version.image_ref == f"{AUTH_REGISTRY}/team/churn@{version.image_digest}"
    assert (
        not (Path.home() / ".docker" / "config.json").is_file()
        or AUTH_REGISTRY not in (Path.home() / ".docker" / "config.json").read_text()
    )  # the login stayed in a temporary config


class _Unavailable(http.server.BaseHTTPRequestHandler):
    hits = 0

    def _answer(self) -> None:
        type(self).hits += 1
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = _answer

    def log_message(self, *args: object) -> None:
        pass


def test_registry_down_or_503_retries_then_fails_without_a_record(
    built: tuple[Workspace, dict[str, float]], engine: DockerEngine
) -> None:
    from modelyard.deploy.probe import free_port
    from modelyard.packaging import push_model_image

    ws, _ = built
    before = ws.store.models.get_version("churn", 1)
    waits: list[float] = []
    down = f"127.0.0.1:{free_port()}"
    with pytest.raises(RegistryError, match=r"after 2 attempt\(s\).*nothing was recorded"):
        push_model_image("churn@1", f"{down}/x", workspace=ws, engine=engine, attempts=2,
                         backoff_s=0.5, sleep=waits.append)  # fmt: skip
    assert waits == [0.5]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        host = f"127.0.0.1:{server.server_address[1]}"
        with pytest.raises(RegistryError, match="did not accept it after 3 attempt"):
            push_model_image("churn@1", f"{host}/x", workspace=ws, engine=engine, attempts=3,
                             backoff_s=0.1, sleep=waits.append)  # fmt: skip
        assert _Unavailable.hits == 3  # one look per attempt
    finally:
        server.shutdown()
        server.server_close()
    after = ws.store.models.get_version("churn", 1)
    assert (after.image_ref, after.image_digest) == (before.image_ref, before.image_digest)
    assert engine.inspect_image(f"{host}/x/churn:1") is None  # the push's tags were removed
