"""Fault injection: processes killed with SIGKILL, a full disk, a crash-looping new version.

Each test breaks something the way the world does (a real signal, a real full filesystem, a real
model server that never becomes ready) and checks what modelyard promised: nothing acknowledged
is lost, nothing half-written is visible, the old version keeps serving.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.serving import read_predictions
from modelyard.workspace import Workspace

sys.path.insert(0, str(Path(__file__).parent))
from _models import saved_churn
from conftest_remote import free_port

ROW = {"a": 0.1, "b": 0.2, "c": 0.3, "city": "x"}
CLIENTS = 8


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(saved_churn(tmp_path_factory.mktemp("model")))


def _wait_ready(proc: subprocess.Popen[bytes], url: str, out: Path, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, out.read_text()
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"not ready: {out.read_text()}"
        time.sleep(0.05)


@contextlib.contextmanager
def _serving(
    model_dir: Path, log_dir: Path, out: Path, workers: int
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A model server process (``workers`` workers) in its own process group, killed at exit."""
    port = free_port()
    with out.open("wb") as output:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "modelyard.serving", "--model-dir", str(model_dir),
                "--name", "churn", "--host", "127.0.0.1", "--port", str(port),
                "--log-dir", str(log_dir), "--log-level", "warning",
                "--workers", str(workers),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(proc, f"{base}/v2/health/ready", out)
        yield proc, base
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


@pytest.fixture
def model_server(
    model_dir: Path, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """A model server process (``request.param`` workers) in its own process group."""
    with _serving(model_dir, tmp_path / "log", tmp_path / "server.out", request.param) as served:
        yield served


@pytest.mark.slow
@pytest.mark.parametrize("model_server", [1, 2], indirect=True, ids=["1-worker", "2-workers"])
def test_sigkill_under_load_loses_no_answered_prediction(
    model_server: tuple[subprocess.Popen[bytes], str], model_dir: Path, tmp_path: Path
) -> None:
    """On main 6,852 requests were answered 2xx and 6,699 logged. Now every request id a client
    got a 2xx for is in the log after SIGKILL of the whole server (master and workers); at most
    the requests in flight at the kill (written, not yet answered) are logged without a 2xx."""
    proc, base = model_server
    answered: list[list[str]] = [[] for _ in range(CLIENTS)]
    sent = threading.Semaphore(0)

    def client(i: int) -> None:
        body = {"dataframe_records": [ROW] * (1 + i % 3)}
        with httpx.Client(base_url=base, timeout=10) as http:
            for n in range(1_000_000):
                rid = f"c{i}-{n}"
                try:
                    r = http.post("/invocations", json=body, headers={"X-Request-ID": rid})
                except httpx.TransportError:
                    return
                if 200 <= r.status_code < 300:
                    answered[i].append(rid)
                sent.release()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(CLIENTS)]
    for t in threads:
        t.start()
    try:
        for _ in range(500):  # under load: at least 500 answers before the kill
            assert sent.acquire(timeout=60)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        for t in threads:
            t.join(timeout=60)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    acknowledged = {rid for ids in answered for rid in ids}
    logged = read_predictions(tmp_path / "log").column("request_id").to_pylist()
    assert len(acknowledged) >= 500
    assert acknowledged <= set(logged), f"{len(acknowledged - set(logged))} answered, not logged"
    assert len(logged) == len(set(logged))
    assert len(logged) - len(acknowledged) <= CLIENTS

    # A fresh server on the same log remembers none of these predictions, yet checks a label
    # against the rows of any of them (read from the log's rows index, which the kill left
    # whole up to its last complete line), whichever worker answered it.
    oldest = [ids[0] for ids in answered if ids]
    with _serving(model_dir, tmp_path / "log", tmp_path / "restarted.out", 1) as (_, again):
        for rid in oldest:
            rows = 1 + int(rid[1:].split("-")[0]) % 3
            wrong = httpx.post(
                f"{again}/v1/feedback", json={"request_id": rid, "label": [1] * (rows + 1)}
            )
            assert wrong.status_code == 422, wrong.text
            assert f"the prediction has {rows} rows" in wrong.json()["error"]
            right = httpx.post(
                f"{again}/v1/feedback", json={"request_id": rid, "label": [1] * rows}
            )
            assert right.status_code == 200, right.text


TRAIN = """
import sys, time
import modelyard
run = modelyard.start_run(name="killed", heartbeat_interval_s=60)
print(run.id, flush=True)
for i in range(100):
    run.log_metric("loss", 1.0 / (i + 1))
print("logged", flush=True)
time.sleep(600)
"""


@pytest.mark.slow
def test_sigkill_of_a_training_process_keeps_its_written_metrics(
    sqlite_workspace: Workspace,
) -> None:
    """The run ends ``lost`` (its heartbeat stops), and the points logged before the kill are
    stored: the flush timer wrote them within ``flush_interval_s`` although no heartbeat was
    due and the buffer was far below ``flush_every`` (on main they waited for a heartbeat)."""
    from modelyard.tracking.query import get_run, list_runs

    workspace = sqlite_workspace
    proc = subprocess.Popen(
        [sys.executable, "-c", TRAIN], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        run_id = proc.stdout.readline().strip()
        assert proc.stdout.readline().strip() == "logged", proc.stderr
        logged = time.monotonic()
        store = workspace.store.runs
        while store.count_metrics([run_id]) < 100:
            assert time.monotonic() < logged + 10, "the points were never written"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    history = store.metric_history(run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(i, 1.0 / (i + 1)) for i in range(100)]
    assert get_run(workspace, run_id, stale_after_s=0.0).status == "lost"
    assert [r.run.id for r in list_runs(workspace, status="lost", stale_after_s=0.0)] == [run_id]


# ---- SIGKILL of the team server mid-upload ----------------------------------------------------


def _team_server(ws: Workspace, port: int, out: Path) -> subprocess.Popen[bytes]:
    with out.open("ab") as output:
        proc = subprocess.Popen(
            [
                sys.executable, "-c", "from modelyard.cli.main import main; main()",
                "-C", str(ws.root), "server", "--port", str(port),
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
        )  # fmt: skip
    _wait_ready(proc, f"http://127.0.0.1:{port}/api/health", out)
    return proc


@pytest.mark.slow
def test_sigkill_of_the_team_server_mid_upload(sqlite_workspace: Workspace, tmp_path: Path) -> None:
    """Killed while a blob streams in: the blob is not visible, the bytes already received are
    kept, and the client's retry resumes from them and completes."""
    import hashlib

    from modelyard.remote import RemoteArtifactStore, RemoteClient

    ws = sqlite_workspace
    _, token = ws.store.tokens.create("faults", "admin")
    data = os.urandom(24 << 20)
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    source = tmp_path / "blob.bin"
    source.write_bytes(data)
    port = free_port()
    out = tmp_path / "server.out"
    proc = _team_server(ws, port, out)
    sent = [0]

    def body() -> Iterator[bytes]:
        for start in range(0, len(data), 1 << 20):
            if start == 8 << 20:  # a third in: kill the server, keep sending
                os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
            sent[0] = start
            yield data[start : start + (1 << 20)]

    client = RemoteClient(f"http://127.0.0.1:{port}", token)
    try:
        with pytest.raises(httpx.TransportError):
            client.http.put(f"/uploads/{digest}", params={"size": len(data)}, content=body())
        assert proc.wait(timeout=30) == -signal.SIGKILL
        assert not ws.artifacts.exists(digest)  # nothing half-written is visible
        proc = _team_server(ws, port, out)
        status = client.get(f"/uploads/{digest}")
        assert status["complete"] is False
        assert 0 < status["offset"] <= 8 << 20  # what arrived before the kill is kept
        assert RemoteArtifactStore(tmp_path / "cache", client).put_file(source) == digest
    finally:
        client.close()
        if proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=60)
    assert ws.artifacts.get_bytes(digest) == data
    assert list((ws.artifacts.root / "uploads").iterdir()) == []


# ---- a full disk ------------------------------------------------------------------------------


@contextlib.contextmanager
def _tmpfs(mount: Path) -> Iterator[Path]:
    """A real 2 MiB filesystem (tmpfs) at ``mount``; mounting needs root."""
    mount.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a tmpfs: {done.stderr.strip()}")
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    with _tmpfs(tmp_path / "small-disk") as mount:
        yield mount


def _fill(folder: Path) -> Path:
    """Fill the filesystem of ``folder`` to the last byte."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
    return filler


def test_a_full_artifact_disk_is_a_clear_error_and_stores_nothing(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    from modelyard.errors import ArtifactError
    from modelyard.tracking import start_run

    store = sqlite_workspace.artifacts
    big = tmp_path / "weights.bin"
    big.write_bytes(os.urandom(3 << 20))
    with (
        _tmpfs(store.root),
        start_run("full-disk", workspace=sqlite_workspace) as run,
    ):
        blobs = sorted(store.root.glob("sha256/*/*"))  # the run's environment lock
        with pytest.raises(ArtifactError, match="out of space") as info:
            run.log_artifact(big)
        assert "nothing was stored" in str(info.value)
        assert list((store.root / "tmp").iterdir()) == []  # no half-written temporary file
        assert sorted(store.root.glob("sha256/*/*")) == blobs
        small = tmp_path / "notes.txt"
        small.write_text("fits")
        digest = run.log_artifact(small)  # the store still works
    artifacts = sqlite_workspace.store.runs.artifacts(run.id)
    assert [(a.name, a.digest) for a in artifacts] == [("notes.txt", digest)]


def test_a_full_log_disk_refuses_predictions_instead_of_losing_them(
    model_dir: Path, small_disk: Path
) -> None:
    """No space for the prediction log: requests get 503 (none is answered 2xx unlogged); once
    space is back the server logs and answers again, and every 2xx is in the log."""
    from _asgi import AppClient
    from modelyard.serving import ServeConfig, create_app

    config = ServeConfig(log_dir=small_disk / "log")
    answered = []
    with AppClient(create_app(model_dir, name="churn", version="1", config=config)) as c:

        def predict() -> int:
            r = c.post("/invocations", json={"instances": [ROW]})
            if r.status_code == 200:
                answered.append(r.headers["x-request-id"])
            return int(r.status_code)

        assert predict() == 200
        filler = _fill(small_disk)
        # The open segment's last page may still take a few records; then every one is refused.
        statuses = [predict() for _ in range(40)]
        assert 503 in statuses
        assert set(statuses[statuses.index(503) :]) == {503}
        filler.unlink()
        assert {predict() for _ in range(5)} == {200}
        assert "modelyard_predlog_dropped_total" in c.get("/metrics").text
    assert sorted(read_predictions(small_disk / "log").column("request_id").to_pylist()) == sorted(
        answered
    )


# ---- a crash-looping new version --------------------------------------------------------------


@pytest.mark.slow
def test_a_crash_looping_version_never_interrupts_the_old_one(sqlite_workspace: Workspace) -> None:
    """A new version whose server dies at every start: the rollout fails after its timeout and
    the running version answers every request of a load that runs throughout."""
    pytest.importorskip("gunicorn")
    from _deploy_helpers import Load, register_broken, register_churn
    from modelyard import deploy
    from modelyard.errors import RolloutFailed

    ws = sqlite_workspace
    (v1,) = register_churn(ws, 1)
    broken = register_broken(ws)
    port = free_port()
    deploy.deploy(deploy.DeploySpec(v1, "churn-api", target="local", port=port), workspace=ws)
    try:
        with Load(f"http://127.0.0.1:{port}") as load:
            deadline = time.monotonic() + 30
            while load.ok < 20:
                assert time.monotonic() < deadline, load.failed[:3]
                time.sleep(0.05)
            spec = deploy.DeploySpec(broken, "churn-api", port=port, timeout_s=20)
            with pytest.raises(RolloutFailed, match="never became ready"):
                deploy.deploy(spec, workspace=ws)
            before = load.ok
            while load.ok < before + 20:
                assert time.monotonic() < deadline + 120, load.failed[:3]
                time.sleep(0.05)
        assert load.failed == [], load.failed[:3]
        assert load.versions == {"1"}
        dep = ws.store.deployments.get("churn-api")
        assert dep.current is not None
        assert dep.current.model_ref == v1
        assert dep.revisions[-1].status == "failed"
    finally:
        deploy.stop("churn-api", workspace=ws)


# ---- a PostgreSQL restart during writes -------------------------------------------------------


@pytest.fixture
def private_postgres(tmp_path: Path) -> Iterator[tuple[str, Callable[[], None]]]:
    """A PostgreSQL cluster of this test's own on a free port (the shared one on :5432 is never
    touched), run as the ``postgres`` user; yields its URL and a function restarting it."""
    import pwd
    import shutil
    import tempfile

    from conftest import require_service

    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    try:
        user = pwd.getpwnam("postgres")
    except KeyError:
        user = None
    require_service(
        bool(bins)
        and user is not None
        and os.geteuid() == 0
        and shutil.which("runuser") is not None,
        "a private PostgreSQL needs its binaries, the postgres user and root (runuser)",
    )
    assert user is not None
    bindir = bins[-1].parent
    home = Path(
        tempfile.mkdtemp(prefix="modelyard-pg-")
    )  # outside tmp_path: postgres must enter it
    os.chown(home, user.pw_uid, user.pw_gid)
    data, port = home / "data", free_port()

    def pg(*args: str) -> None:
        subprocess.run(
            ["runuser", "-u", "postgres", "--", *args],
            check=True,
            capture_output=True,
            timeout=120,
        )

    pg(str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "--no-sync")
    ctl = [str(bindir / "pg_ctl"), "-D", str(data), "-l", str(home / "log"), "-w"]
    options = f"-p {port} -k {home} -c listen_addresses=127.0.0.1"
    pg(*ctl, "-o", options, "start")
    try:
        yield (
            f"postgresql+psycopg://postgres@127.0.0.1:{port}/postgres",
            lambda: pg(*ctl, "-m", "fast", "-o", options, "restart"),
        )
    finally:
        pg(*ctl, "-m", "immediate", "stop")
        shutil.rmtree(home)


@pytest.mark.slow
def test_a_postgresql_restart_during_writes_loses_nothing_acknowledged(
    private_postgres: tuple[str, Callable[[], None]], tmp_path: Path
) -> None:
    """A run logs metric points one by one, each acknowledged when ``flush()`` returns; the
    database restarts under it (every connection cut). A failed flush keeps its points, the
    writer retries, and afterwards the store holds every acknowledged point exactly once."""
    from modelyard.tracking import start_run

    url, restart = private_postgres
    ws, _ = Workspace.init(tmp_path / "ws", environ={"MODELYARD_STORE_URL": url})
    acknowledged: list[int] = []
    refused: list[str] = []
    stop = threading.Event()
    try:
        run = start_run("pg-restart", workspace=ws)

        def writer() -> None:
            i = 0
            while not stop.is_set():
                run.log_metric("x", float(i), step=i)
                while True:
                    try:
                        run.flush()
                        break
                    except Exception as exc:  # the database is restarting: retry
                        refused.append(type(exc).__name__)
                        stop.wait(0.05)  # retry pacing, not synchronisation
                acknowledged.append(i)
                i += 1

        thread = threading.Thread(target=writer)
        thread.start()
        try:
            deadline = time.monotonic() + 60
            while len(acknowledged) < 50:
                assert time.monotonic() < deadline
                assert thread.is_alive()
                time.sleep(0.02)
            restart()
            after = len(acknowledged)
            while len(acknowledged) < after + 50:
                assert time.monotonic() < deadline + 60, refused[-3:]
                assert thread.is_alive()
                time.sleep(0.02)
        finally:
            stop.set()
            thread.join(60)
        run.end()
        steps = [m.step for m in ws.store.runs.metric_history(run.id, "x")]
    finally:
        ws.close()
    assert refused, "the restart was never felt: it did not happen during the writes"
    assert steps == acknowledged == list(range(len(acknowledged)))


# ---- a registry that dies mid-push ------------------------------------------------------------


@pytest.fixture
def private_registry(tmp_path: Path) -> Iterator[tuple[str, Path, Callable[[], None]]]:
    """A ``docker-registry`` of this test's own on a free port; yields its host, its storage
    folder and a function that SIGKILLs it."""
    import shutil

    from conftest import require_service

    binary = shutil.which("docker-registry")
    require_service(binary is not None, "docker-registry is not installed")
    assert binary is not None
    port, storage = free_port(), tmp_path / "registry"
    config = tmp_path / "registry.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {storage}\n"
        f"http:\n  addr: 127.0.0.1:{port}\n"
    )
    out = tmp_path / "registry.out"
    with out.open("wb") as output:
        proc = subprocess.Popen(
            [binary, "serve", str(config)], stdout=output, stderr=subprocess.STDOUT
        )
    host = f"127.0.0.1:{port}"

    def kill() -> None:
        proc.send_signal(signal.SIGKILL)
        proc.wait()

    try:
        _wait_ready(proc, f"http://{host}/v2/", out)
        yield host, storage, kill
    finally:
        if proc.poll() is None:
            kill()


@pytest.mark.slow
@pytest.mark.docker
def test_a_registry_killed_mid_push_records_nothing(
    engine: Any,
    base_image: str,
    sqlite_workspace: Workspace,
    private_registry: tuple[str, Path, Callable[[], None]],
) -> None:
    """The registry dies while the image's layers stream in: the push fails with one clear
    RegistryError, no remote digest or tag is recorded, and the push's local tags are gone."""
    from _deploy_helpers import register_churn
    from modelyard.errors import RegistryError
    from modelyard.packaging import build_model_image, push_model_image

    ws = sqlite_workspace
    (ref,) = register_churn(ws, 1)
    build_model_image(ref, workspace=ws, base_image=base_image, engine=engine)
    before = ws.store.models.get_version("churn", 1)
    host, storage, kill = private_registry
    uploads = storage / "docker" / "registry" / "v2" / "repositories" / "faults" / "churn"
    killed = threading.Event()

    def kill_when_layers_arrive() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if any((uploads / "_uploads").glob("*/data")):
                kill()
                killed.set()
                return
            time.sleep(0.01)

    killer = threading.Thread(target=kill_when_layers_arrive)
    killer.start()
    try:
        with pytest.raises(RegistryError, match="nothing was recorded") as info:
            push_model_image(ref, f"{host}/faults", workspace=ws, engine=engine, attempts=2,
                             backoff_s=0, sleep=lambda s: None)  # fmt: skip
    finally:
        killer.join(330)
    assert killed.is_set(), "the push ended before any layer reached the registry"
    assert f"could not push {host}/faults/churn:1" in str(info.value)
    after = ws.store.models.get_version("churn", 1)
    assert (after.image_ref, after.image_digest) == (before.image_ref, before.image_digest)
    assert engine.inspect_image(f"{host}/faults/churn:1") is None
    assert ws.store.lineage.edges_from("image", before.image_id or "") == []
