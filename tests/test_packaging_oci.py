"""Daemonless, reproducible model images (``modelyard build --builder oci``), pushed with the
distribution API beside their SBOM, pulled and run by a real Docker engine, and verified from
the registry (``modelyard verify``), tampering included.

The registry is the open one of scripts/registry.sh (Debian's docker-registry, distribution
2.8: no referrers API, so the SBOM is found by its ``sha256-<hex>.sbom`` tag). The builds run
as `modelyard` subprocesses with ``DOCKER_HOST`` pointing at a port where nothing listens: a
build that reached for an engine would fail.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from _deploy_helpers import register_churn
from conftest import OPEN_REGISTRY
from modelyard.cli.main import cli
from modelyard.images import DockerEngine
from modelyard.images.oci import (
    CONFIG,
    MANIFEST,
    ImageLayout,
    canonical_json,
    sha256_digest,
    tree_entries,
    write_layer,
)
from modelyard.images.registry import Registry
from modelyard.workspace import Workspace

pytest.importorskip("sklearn")
# Two cold builds of a 300 MB environment, on a loaded machine, before the first test.
pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1500)]

MODELYARD = str(Path(sys.executable).parent / "modelyard")
NOWHERE = "tcp://127.0.0.1:9"  # the discard port: no engine answers there


@dataclass
class Built:
    ws_a: Path
    ws_b: Path
    base_ref: str
    digests: tuple[str, str]
    repo: str  # HOST/PATH/churn
    push_output: str
    image_size: int


def _modelyard(*args: str, cwd: Path, env: dict[str, str] | None = None) -> str:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    environ.update({"DOCKER_HOST": NOWHERE, **(env or {})})
    proc = subprocess.run(
        [MODELYARD, "-C", str(cwd), *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=1500,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def base_in_registry(engine: DockerEngine, base_image: str, open_registry: str) -> str:
    """modelyard's base image pushed to the open registry: named by digest, as a CI would."""
    repo = f"{open_registry}/oci-test/base"
    engine.run(["tag", base_image, f"{repo}:py3.11"])
    engine.run(["push", f"{repo}:py3.11"], timeout=600)
    _, _, digest = Registry(open_registry).get_manifest("oci-test/base", "py3.11")
    return f"{repo}@{digest}"


@pytest.fixture(scope="module")
def built(base_in_registry: str, tmp_path_factory: pytest.TempPathFactory) -> Built:
    """churn@1 registered once, the workspace copied (fresh mtimes) to a second folder, each
    built with no engine and no cache; the second pushed."""
    root = tmp_path_factory.mktemp("oci")
    ws_a = root / "a" / "ws"
    ws, _ = Workspace.init(ws_a, environ={})
    register_churn(ws, 1)
    ws.close()
    ws_b = root / "b" / "elsewhere"
    shutil.copytree(ws_a, ws_b, copy_function=shutil.copyfile)
    digests = []
    for i, folder in enumerate((ws_a, ws_b)):
        out = _modelyard(
            "build",
            "churn@1",
            "--builder",
            "oci",
            "--base-image",
            base_in_registry,
            "-q",
            cwd=folder,
            env={"PYTHONHASHSEED": str(i + 1)},
        )
        digests.append(out.strip().splitlines()[-1])
    repo_path = f"oci-test/{uuid.uuid4().hex[:8]}"
    push = _modelyard("push", "churn@1", "--registry", f"{OPEN_REGISTRY}/{repo_path}", cwd=ws_b)
    wsb = Workspace.at(ws_b, environ={})
    size = wsb.store.models.get_version("churn", 1).image_size or 0
    wsb.close()
    return Built(
        ws_a,
        ws_b,
        base_in_registry,
        (digests[0], digests[1]),
        f"{OPEN_REGISTRY}/{repo_path}/churn",
        push,
        size,
    )


def test_two_clean_workspaces_build_the_same_manifest_digest(built: Built) -> None:
    a, b = built.digests
    assert a.startswith("sha256:")
    assert a == b
    # The layout holds that manifest, and its blobs are what the manifest says.
    layout = ImageLayout(built.ws_b / ".modelyard" / "oci")
    manifest = layout.get_json(b)
    assert manifest["mediaType"] == MANIFEST
    assert manifest["config"]["mediaType"] == CONFIG
    for blob in [manifest["config"], *manifest["layers"]]:
        layout.verify_file(blob["digest"])


def test_pushed_with_the_registry_api_under_the_build_digest(built: Built) -> None:
    host, _, path = built.repo.partition("/")
    reg = Registry(host)
    data, media, digest = reg.get_manifest(path, "1")
    assert digest == built.digests[0]
    assert media == MANIFEST
    tags = json.loads(urllib.request.urlopen(f"http://{host}/v2/{path}/tags/list").read())["tags"]
    sbom_tag = digest.replace(":", "-") + ".sbom"
    assert sbom_tag in tags
    assert f"Pushed the SBOM as {built.repo}:{sbom_tag} (no referrers API)" in built.push_output
    # The SBOM artifact names the image as its subject, and is the SBOM the build recorded.
    sbom_manifest, _, _ = reg.get_manifest(path, sbom_tag)
    doc = json.loads(sbom_manifest)
    assert doc["subject"]["digest"] == digest
    assert doc["artifactType"] == "application/vnd.cyclonedx+json"
    sbom = reg.get_blob_bytes(path, doc["layers"][0]["digest"])
    recorded = subprocess.run(
        [MODELYARD, "-C", str(built.ws_b), "sbom", "churn@1"],
        capture_output=True,
        check=True,
    ).stdout
    assert sbom + b"\n" == recorded
    # distribution 2.8 has no referrers API: the client finds the SBOM by the tag instead.
    assert reg.referrers(path, digest) is None


def test_docker_pulls_and_runs_it_read_only_as_its_user(built: Built, engine: DockerEngine) -> None:
    ref = f"{built.repo}@{built.digests[0]}"
    engine.run(["pull", ref], timeout=600)
    info = engine.inspect_image(ref)
    assert info is not None
    config = info["Config"]
    assert config["User"] == "10001:10001"
    assert config["Labels"]["io.modelyard.model"] == "churn"
    # 447 MB against 656 MB for the Docker build of the same version; the 350 MB target
    # is not reached (README: Status). This bound catches a regression.
    assert info["Size"] <= 460_000_000, info["Size"]
    assert (
        info["Id"]
        == json.loads(
            Registry(built.repo.split("/")[0]).get_manifest(
                built.repo.split("/", 1)[1], built.digests[0]
            )[0]
        )["config"]["digest"]
    )
    name = f"oci-run-{uuid.uuid4().hex[:8]}"
    engine.run(
        [
            "run",
            "-d",
            "--name",
            name,
            "--read-only",
            "--user",
            "10001:10001",
            "--tmpfs",
            "/tmp",
            "--tmpfs",
            "/home/modelyard/predictions:uid=10001,gid=10001",
            "--network",
            "bridge",
            "-p",
            "127.0.0.1::8080",
            ref,
        ],
    )
    try:
        port = engine.run(["port", name, "8080/tcp"]).stdout.decode().strip().rsplit(":", 1)[1]
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(f"{url}/v2/health/ready", timeout=2) as resp:
                    if resp.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            state = engine.inspect_image(ref)
            logs = engine.run(["logs", name], check=False)
            assert time.monotonic() < deadline, logs.stdout + logs.stderr
            assert state is not None
            time.sleep(0.5)  # polling a server's readiness: nothing to wait on but the port
        body = json.dumps(
            {
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": [2, 3],
                        "datatype": "FP64",
                        "data": [1.0, 0.0, 0.0, -1.0, 0.0, 0.0],
                    }
                ]
            }
        ).encode()
        req = urllib.request.Request(
            f"{url}/v2/models/churn/infer", data=body, headers={"content-type": "application/json"}
        )
        with urllib.request.urlopen(req, timeout=30) as resp:
            answer = json.loads(resp.read())
        assert answer["outputs"][0]["data"] == [1, 0]
    finally:
        engine.run(["rm", "-f", name], check=False)
        engine.run(["rmi", ref], check=False)  # each run pushes to a new repository


def _verify(ws: Path, ref: str) -> Any:
    return CliRunner().invoke(cli, ["-C", str(ws), "verify", ref])


def test_verify_reads_labels_layer_and_sbom_and_prints_the_chain(built: Built) -> None:
    result = _verify(built.ws_b, f"{built.repo}:1")
    assert result.exit_code == 0, result.output
    for name in ("config", "version", "labels", "model layer", "sbom"):
        assert f"ok   {name}" in result.output
    assert "found by tag sha256-" in result.output
    assert f"image {built.repo}@{built.digests[0]}" in result.output
    assert "└─ model churn@1 (sklearn" in result.output
    assert "└─ run " in result.output


def _tampered(
    built: Built, tag: str, *, label: tuple[str, str] | None = None, model_file: str | None = None
) -> str:
    """Push a copy of the image under ``tag`` with one label changed or one model file
    altered (its layer rewritten, the config's diff_id updated to match)."""
    host, _, path = built.repo.partition("/")
    reg = Registry(host)
    data, _, _ = reg.get_manifest(path, built.digests[0])
    manifest = json.loads(data)
    config = json.loads(reg.get_blob_bytes(path, manifest["config"]["digest"]))
    if label is not None:
        config["config"]["Labels"][label[0]] = label[1]
    if model_file is not None:
        layout = ImageLayout(built.ws_b / ".modelyard" / "oci")
        work = built.ws_b.parent / f"tamper-{tag}"
        model = work / "model"
        shutil.copytree(built.ws_b / ".modelyard" / "packaging" / "churn" / "1", model)
        with (model / model_file).open("ab") as fh:
            fh.write(b"\0")
        sbom = work / "sbom.cdx.json"
        sbom.write_bytes(b"{}")
        layer = write_layer(layout, tree_entries(model, "opt/modelyard/app/model"))
        manifest["layers"][-1] = layer.descriptor.to_json()
        config["rootfs"]["diff_ids"][-1] = layer.diff_id
        reg.put_blob(path, layer.digest, layout.blob_path(layer.digest))
    config_bytes = canonical_json(config)
    reg.put_blob(path, sha256_digest(config_bytes), config_bytes)
    manifest["config"] = {
        "mediaType": CONFIG,
        "digest": sha256_digest(config_bytes),
        "size": len(config_bytes),
    }
    reg.put_manifest(path, tag, canonical_json(manifest), MANIFEST)
    return f"{built.repo}:{tag}"


def test_verify_reports_a_tampered_label(built: Built) -> None:
    ref = _tampered(built, "label", label=("io.modelyard.model-digest", "sha256:" + "0" * 64))
    result = _verify(built.ws_b, ref)
    assert result.exit_code == 1, result.output
    assert "FAIL labels       io.modelyard.model-digest is 'sha256:000" in result.output
    assert "does not verify (labels, sbom)" in result.output


def test_verify_reports_a_tampered_model_layer(built: Built) -> None:
    folder = built.ws_b / ".modelyard" / "packaging" / "churn" / "1"
    victim = sorted(p.name for p in folder.iterdir() if p.is_file())[0]
    ref = _tampered(built, "layer", model_file=victim)
    result = _verify(built.ws_b, ref)
    assert result.exit_code == 1, result.output
    assert "ok   labels" in result.output
    assert "FAIL model layer" in result.output
    assert f"{victim} is sha256:" in result.output


def test_a_local_base_through_docker_save_gives_the_same_file_system(
    built: Built, base_image: str
) -> None:
    """The same base read from the engine (docker save) instead of the registry: its layers
    are compressed here, so blobs differ, but the file systems (diff_ids) are the same."""
    out = _modelyard(
        "build",
        "churn@1",
        "--builder",
        "oci",
        "--base-image",
        base_image,
        "-q",
        cwd=built.ws_a,
        env={"DOCKER_HOST": os.environ.get("DOCKER_HOST", "")},
    )
    layout = ImageLayout(built.ws_a / ".modelyard" / "oci")
    local = layout.get_json(layout.get_json(out.strip())["config"]["digest"])
    remote = layout.get_json(layout.get_json(built.digests[0])["config"]["digest"])
    # Base, user, deps and runtime alike; the model layer's SBOM names the base as given.
    assert local["rootfs"]["diff_ids"][:-1] == remote["rootfs"]["diff_ids"][:-1]
    assert local["rootfs"]["diff_ids"][-1] != remote["rootfs"]["diff_ids"][-1]
    # Read again (the engine resolves the tag; the layers come from the layout): same bytes.
    again = _modelyard(
        "build", "churn@1", "--builder", "oci", "--base-image", base_image, "-q",
        cwd=built.ws_a, env={"DOCKER_HOST": os.environ.get("DOCKER_HOST", "")},
    )  # fmt: skip
    assert again.strip() == out.strip()
