"""Secrets never reach a model image: canaries planted where a real user keeps secrets (the
environment of training, registration and build; a ``.env`` file and a webhook secret in the
workspace) are searched for in every file of every layer of the saved image, in its config
(env, labels, history), in the build context and in the workspace's own records."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import tarfile
import time
import uuid
import zipfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO

import numpy as np
import pytest
from click.testing import CliRunner

from modelyard.cli.main import cli
from modelyard.images import DockerEngine
from modelyard.packaging import MODEL_DIR
from modelyard.workspace import Workspace

pytest.importorskip("sklearn")
pytest.importorskip("pandas")
pytestmark = [pytest.mark.docker, pytest.mark.slow]

MODEL = "secretscan"
ZIP_MAGIC = b"PK\x03\x04"
GZIP_MAGIC = b"\x1f\x8b"


class Scan:
    """Every place each needle occurs, and every file path looked at. Archives inside files
    (wheels, zips, gzip) are opened too, two levels deep: a secret zipped into a wheel is
    still a leak."""

    def __init__(self, needles: Mapping[str, bytes]) -> None:
        self.needles = dict(needles)
        self.hits: dict[str, list[str]] = {name: [] for name in needles}
        self.paths: set[str] = set()
        self.files = 0

    def data(self, data: bytes, where: str, depth: int = 0) -> None:
        for name, needle in self.needles.items():
            if needle in data:
                self.hits[name].append(where)
        if depth >= 2:
            return
        if data.startswith(ZIP_MAGIC):
            try:
                with zipfile.ZipFile(io.BytesIO(data)) as zf:
                    for info in zf.infolist():
                        inner = f"{where}!{info.filename}"
                        self.data(info.filename.encode(), f"{inner} (name)", depth + 1)
                        self.data(zf.read(info), inner, depth + 1)
            except zipfile.BadZipFile:
                pass  # not a zip after all: its raw bytes were searched above
        elif data.startswith(GZIP_MAGIC):
            with contextlib.suppress(OSError, EOFError):  # not gzip after all
                self.data(gzip.decompress(data), f"{where}!gunzip", depth + 1)

    def tar(self, fileobj: IO[bytes], where: str) -> None:
        """Every member of a (possibly compressed) tar: names, link targets, PAX headers and
        file contents."""
        with tarfile.open(fileobj=fileobj, mode="r:*") as tf:
            for member in tf:
                self.paths.add(member.name.removeprefix("./"))
                header = [member.name, member.linkname, *member.pax_headers.values()]
                self.data("\n".join(header).encode(), f"{where}:{member.name} (header)")
                if member.isfile():
                    f = tf.extractfile(member)
                    assert f is not None
                    self.files += 1
                    self.data(f.read(), f"{where}:{member.name}")

    def folder(self, root: Path, where: str, skip: tuple[Path, ...] = ()) -> None:
        for path in sorted(root.rglob("*")):
            if path in skip:
                continue
            rel = path.relative_to(root).as_posix()
            self.data(rel.encode(), f"{where}/{rel} (name)")
            if path.is_file() and not path.is_symlink():
                self.files += 1
                self.data(path.read_bytes(), f"{where}/{rel}")

    def leaks(self, names: list[str]) -> dict[str, list[str]]:
        return {name: self.hits[name] for name in names if self.hits[name]}


def scan_saved_image(tar_path: Path, scan: Scan) -> dict[str, object]:
    """Search ``docker save`` output: the image config JSON (env, labels, history) and every
    layer tar listed in its manifest (legacy ``<id>/layer.tar`` and OCI ``blobs/`` layouts).
    Returns the parsed config."""
    with tarfile.open(tar_path) as outer:
        names = set(outer.getnames())

        def read(name: str) -> IO[bytes]:
            f = outer.extractfile(name)
            assert f is not None, name
            return f

        manifest = json.loads(read("manifest.json").read())
        assert len(manifest) == 1, manifest
        entry = manifest[0]
        raw_config = read(entry["Config"]).read()
        scan.data(raw_config, "image config")
        layers = entry["Layers"]
        assert layers
        for layer in layers:
            assert layer in names, layer
            scan.tar(read(layer), f"layer {layer}")
        # Anything else in the archive (repositories, index.json, OCI manifests): raw search.
        for name in sorted(names - {entry["Config"], *layers}):
            member = outer.getmember(name)
            if member.isfile():
                scan.data(read(name).read(), f"save archive {name}")
    config: dict[str, object] = json.loads(raw_config)
    return config


@pytest.fixture
def canaries() -> dict[str, str]:
    tag = uuid.uuid4().hex
    return {
        "MODELYARD_TOKEN": f"mytok-canary-{tag}-token",
        "AWS_SECRET_ACCESS_KEY": f"awsk-canary-{tag}-aws",
        ".env": f"dotenv-canary-{tag}-password",
        "webhook": f"hook-canary-{tag}-slack",
    }


@pytest.fixture
def secret_workspace(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, canaries: dict[str, str]
) -> Iterator[Workspace]:
    """A workspace on embedded defaults whose folder and environment hold secrets the way a
    user's do: tokens exported in the shell, a ``.env`` next to the code, a Slack webhook
    (secret in its path) in the monitor config."""
    for var in ("MODELYARD_STORE_URL", "MODELYARD_ARTIFACT_ROOT", "MODELYARD_WORKSPACE",
                "MODELYARD_URL"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("MODELYARD_TOKEN", canaries["MODELYARD_TOKEN"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", canaries["AWS_SECRET_ACCESS_KEY"])
    root = tmp_path / "ws"
    root.mkdir()
    (root / ".env").write_text(
        f"DATABASE_PASSWORD={canaries['.env']}\nMODELYARD_TOKEN={canaries['MODELYARD_TOKEN']}\n"
    )
    ws, _ = Workspace.init(root)  # reads os.environ, as the CLI does
    with (root / "modelyard.toml").open("a") as f:
        f.write(
            "\n[monitor]\n"
            'interval = "5m"\n\n'
            "[[monitor.policies]]\n"
            'name = "page-on-outage"\n'
            'action = "alert"\n'
            'when = ["down"]\n'
            f'webhook = "https://hooks.slack.com/services/T000/B000/{canaries["webhook"]}"\n'
        )
    ws.close()
    monkeypatch.chdir(root)
    ws = Workspace.at(root)
    yield ws
    ws.close()


def test_no_secret_reaches_the_image_the_context_or_the_records(
    secret_workspace: Workspace,
    canaries: dict[str, str],
    engine: DockerEngine,
    base_image: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    import pandas as pd
    from sklearn.linear_model import LogisticRegression

    from modelyard import models
    from modelyard.monitor.policy import load_config
    from modelyard.tracking import load_environment, start_run

    started = time.perf_counter()
    ws = secret_workspace
    # The planted config is one the monitor accepts: a real user's, not a decoy.
    policy = load_config(ws.settings.section("monitor")).policies[0]
    assert policy.webhook is not None
    assert canaries["webhook"] in policy.webhook
    assert ws.settings.server_token == canaries["MODELYARD_TOKEN"]

    # A column name unique to this test: it must be found in the image (the search is real).
    marker = f"visible_{uuid.uuid4().hex}"
    rng = np.random.default_rng(0)
    x = pd.DataFrame(rng.normal(size=(60, 3)), columns=[marker, "b", "c"])
    y = (x[marker] > 0).astype(int)
    with caplog.at_level("DEBUG"):
        with start_run("train", params={"C": 1.0}, workspace=ws) as run:
            run.log_model(LogisticRegression().fit(x, y), "model", input_example=x.head(5))
        version = models.register(run.id, MODEL, workspace=ws)
        result = CliRunner().invoke(
            cli, ["-C", str(ws.root), "build", version.ref, "--base-image", base_image]
        )
        assert result.exit_code == 0, result.output
        context = tmp_path / "context"
        written = CliRunner().invoke(
            cli, ["-C", str(ws.root), "dockerfile", version.ref, "-o", str(context)]
        )
        assert written.exit_code == 0, written.output
    tag = f"modelyard/{MODEL}:{version.version}"
    saved = tmp_path / "image.tar"
    engine.run(["save", "-o", str(saved), tag], timeout=300)

    needles = {name: value.encode() for name, value in canaries.items()}
    needles["marker"] = marker.encode()
    needles["model digest"] = version.digest.encode()
    secrets = list(canaries)

    # 1. The image: every layer's files, and the config (Env, Labels, history).
    image = Scan(needles)
    config = scan_saved_image(saved, image)
    assert image.leaks(secrets) == {}, "a secret is in the image"
    model_file = MODEL_DIR.lstrip("/") + "/modelyard-model.json"
    assert model_file in image.paths, sorted(p for p in image.paths if "modelyard" in p)[:50]
    assert any(MODEL_DIR.lstrip("/") in hit for hit in image.hits["marker"]), image.hits
    assert "image config" in image.hits["model digest"]  # the lineage labels were searched
    assert image.files > 1000  # the base and the virtualenv, not only the model layer
    container = config["config"]
    assert isinstance(container, dict)
    env_names = {item.split("=", 1)[0] for item in container.get("Env") or []}
    assert not env_names & {"MODELYARD_TOKEN", "AWS_SECRET_ACCESS_KEY", "DATABASE_PASSWORD"}

    # 2. The build context a team's CI would build from: only what the image needs.
    ctx = Scan(needles)
    ctx.folder(context, "context")
    assert ctx.leaks(secrets) == {}, "a secret is in the build context"
    assert ctx.hits["marker"]
    assert not list(context.rglob(".env"))
    assert not list(context.rglob("modelyard.toml"))

    # 3. What the workspace recorded: the run, its environment lock, the registry, artifacts.
    digest = ws.store.runs.get(run.id).environment_digest
    assert digest is not None
    lock = ws.artifacts.get_bytes(digest)
    assert set(json.loads(lock)) == {"format", "python", "platform", "packages"}
    assert load_environment(ws, digest).packages  # names and versions, no variable values
    assert not any(value.encode() in lock for value in canaries.values())
    records = Scan(needles)
    records.folder(ws.state_dir, ".modelyard")
    assert records.leaks(secrets) == {}, "a secret is in the workspace's records"
    assert records.hits["marker"]  # the model's artifacts were searched

    # 4. What the user saw.
    for text in (result.output, written.output, caplog.text):
        assert not any(value in text for value in canaries.values())
    print(f"secret scan: {image.files} image files, {time.perf_counter() - started:.1f} s")
