"""Batch scoring: ``modelyard predict`` / ``modelyard.predict`` over dataset versions.

A classifier is trained from a dataset version (so the lineage knows its training data) and
registered; batches are added as CSV or Parquet and scored in small chunks, so every test
crosses chunk boundaries.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import modelyard
from modelyard import data, models
from modelyard.cli.main import cli
from modelyard.errors import DataError, InvalidInput, NotFound
from modelyard.lineage import build_lineage
from modelyard.workspace import Workspace

FEATURES = ["a", "b", "city"]


def frame(n: int, seed: int = 0, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    out = pd.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64) + 1000,
            "a": rng.normal(size=n) + shift,
            "b": rng.normal(size=n),
            "city": rng.choice(["x", "y", "z"], size=n),
        }
    )
    out["y"] = ((out["a"] + (out["city"] == "x")) > 0.5).astype(int)
    return out


def train_model(ws: Workspace, n: int = 600) -> Any:
    """Logistic regression trained from dataset ``train@1``, registered as ``clf@1``."""
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    table = frame(n)
    path = ws.root / "train.csv"
    table.to_csv(path, index=False)
    data.add(path, name="train", workspace=ws)
    pre = ColumnTransformer(
        [("num", StandardScaler(), ["a", "b"]), ("cat", OneHotEncoder(), ["city"])]
    )
    model = make_pipeline(pre, LogisticRegression()).fit(table[FEATURES], table["y"])
    with modelyard.start_run(name="train", workspace=ws) as run:
        run.use_dataset("train@1")
        run.log_model(model, "model", input_example=table[FEATURES].head(5))
    models.register(run.id, "clf", workspace=ws)
    return model


def add_batch(ws: Workspace, table: pd.DataFrame, name: str = "batch", fmt: str = "parquet") -> str:
    path = ws.root / f"{name}.{fmt}"
    if fmt == "parquet":
        table.to_parquet(path, index=False, row_group_size=256)
    else:
        table.to_csv(path, index=False)
    return data.add(path, name=name, workspace=ws).version.ref


def test_scores_become_a_dataset_version_with_lineage_both_ways(workspace: Workspace) -> None:
    model = train_model(workspace)
    batch = frame(1000, seed=1).drop(columns=["y"])
    ref = add_batch(workspace, batch)
    seen: list[tuple[int, int]] = []
    result = modelyard.predict(
        "clf@1",
        ref,
        output="scores",
        columns=["id"],
        batch_rows=300,
        workspace=workspace,
        progress=lambda done, total: seen.append((done, total)),
    )
    assert result.output.ref == "scores@1"
    assert result.rows == 1000
    assert seen == [(300, 1000), (600, 1000), (900, 1000), (1000, 1000)]
    scores = data.read_frame("scores@1", workspace)
    assert list(scores.columns) == ["row_id", "id", "prediction", "proba_0", "proba_1"]
    assert scores["row_id"].tolist() == list(range(1000))
    assert scores["id"].tolist() == batch["id"].tolist()
    assert scores["prediction"].tolist() == model.predict(batch[FEATURES]).tolist()
    np.testing.assert_allclose(
        scores[["proba_0", "proba_1"]].to_numpy(), model.predict_proba(batch[FEATURES])
    )
    # a batch is not served traffic: no prediction-log folder for the monitor to mistake
    assert not (workspace.state_dir / "predictions").exists()
    # the output was added through data add: it has a profile
    assert (result.output.profile or {})["row_count"] == 1000
    # lineage: scores ← run ← (model version, input dataset), and back down from each
    up = build_lineage(workspace, "scores@1", direction="up", depth=2)
    reached = {(n.node_type, n.node_id) for n in up.walk()}
    assert {("run", result.run_id), ("model_version", "clf@1"), ("dataset_version", ref)} <= reached
    for start in ("clf@1", ref):
        down = build_lineage(workspace, start, direction="down", depth=2)
        assert ("dataset_version", "scores@1") in {(n.node_type, n.node_id) for n in down.walk()}
    run = workspace.store.runs.get(result.run_id)
    assert run.status == "finished"
    assert run.params["model"] == "clf@1"
    assert run.params["input"] == ref


def test_cli_scores_a_csv_and_a_rerun_gives_the_same_version(
    sqlite_workspace: Workspace,
) -> None:
    ws = sqlite_workspace
    train_model(ws)
    ref = add_batch(ws, frame(250, seed=2).drop(columns=["y", "id"]), fmt="csv")
    runner = CliRunner()
    args = ["predict", "clf@production", ref, "--output", "scores", "--batch-rows", "64"]
    refused = runner.invoke(cli, args)
    assert refused.exit_code == 1
    assert refused.output == "error: model 'clf' has no alias 'production' (it has no aliases)\n"
    models.promote("clf@1", "production", workspace=ws)
    first = runner.invoke(cli, [*args, "--report", "batch.html"])
    assert first.exit_code == 0, first.output
    assert first.output.startswith(f"Scored 250 rows of {ref} with clf@1 in ")
    assert "-> scores@1 (run " in first.output
    assert "Data drift vs train@1" in first.output
    assert "no drift" in first.output
    assert "Data drift" in (ws.root / "batch.html").read_text()
    again = runner.invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert "-> scores@1 (run " in again.output  # same content, same version
    assert [v.version for v in data.versions("scores", workspace=ws)] == [1]
    lineage = runner.invoke(cli, ["lineage", "scores@1", "--up"])
    assert lineage.exit_code == 0, lineage.output
    assert "clf@1" in lineage.output
    assert ref in lineage.output


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda f: f.drop(columns=["b"]), InvalidInput, "missing column 'b'"),
        (lambda f: f.assign(extra=1.0), InvalidInput, "unknown column 'extra'"),
        (
            lambda f: f.assign(a="high"),
            InvalidInput,
            "column 'a' holds strings, the model takes float64",
        ),
        (lambda f: f.assign(b=np.nan), InvalidInput, "column 'b'"),
        (lambda f: f.head(0), DataError, "has no rows"),
    ],
    ids=["missing", "extra", "type", "nan", "empty"],
)
def test_bad_input_fails_before_any_output(
    sqlite_workspace: Workspace, change: Any, error: type[Exception], message: str
) -> None:
    ws = sqlite_workspace
    train_model(ws)
    batch = change(frame(50, seed=3).drop(columns=["y", "id"]))
    ref = add_batch(ws, batch, fmt="parquet")
    with pytest.raises(error, match=message):
        modelyard.predict("clf@1", ref, output="scores", workspace=ws)
    with pytest.raises(NotFound):
        data.versions("scores", workspace=ws)
    assert not any((ws.state_dir / "tmp").iterdir())


def test_carried_columns_must_exist_and_not_clash(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    train_model(ws)
    ref = add_batch(ws, frame(20).drop(columns=["y"]))
    with pytest.raises(InvalidInput, match="'nope' \\(to carry over\\) is not in the data"):
        modelyard.predict("clf@1", ref, output="s", columns=["id", "nope"], workspace=ws)
    with pytest.raises(InvalidInput, match="unknown column 'id'"):
        modelyard.predict("clf@1", ref, output="s", workspace=ws)


KILL_SCRIPT = """
import sys, time
from pathlib import Path
import modelyard
marker = Path(sys.argv[1])
def progress(done, total):
    marker.write_text(str(done))
    time.sleep(60)   # parked after the first chunk until the test kills us
modelyard.predict("clf@1", sys.argv[2], output="scores", batch_rows=100, progress=progress)
"""


def test_a_killed_job_leaves_no_version_and_a_rerun_works(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    model = train_model(ws)
    batch = frame(1000, seed=4).drop(columns=["y", "id"])
    ref = add_batch(ws, batch)
    marker = ws.root / "scored"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(KILL_SCRIPT), str(marker), ref],
        cwd=ws.root,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert marker.exists(), "the job never scored its first chunk"
        scratch = list((ws.state_dir / "tmp").iterdir())
        assert len(scratch) == 1  # half-written output exists, privately
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    with pytest.raises(NotFound):
        data.versions("scores", workspace=ws)
    result = modelyard.predict("clf@1", ref, output="scores", batch_rows=100, workspace=ws)
    assert result.output.ref == "scores@1"
    scores = data.read_frame("scores@1", ws)
    assert scores["prediction"].tolist() == model.predict(batch[FEATURES]).tolist()
    assert not any((ws.state_dir / "tmp").iterdir())  # the killed job's folder is gone too


POLICIES = """
[monitor]
window = 100

[[monitor.policies]]
name = "page-on-drift"
action = "alert"
when = ["drift_share > 0.3"]

[[monitor.policies]]
name = "retrain-on-drift"
action = "retrain"
when = ["drift_share > 0.3"]
"""


def test_a_drifted_batch_fires_the_served_models_policies(sqlite_workspace: Workspace) -> None:
    ws = sqlite_workspace
    train_model(ws)
    with (ws.root / "modelyard.toml").open("a") as f:
        f.write(POLICIES)
    ws = Workspace.at(ws.root, environ={})
    ws.store.deployments.create("clf-api", "local", port=None, replicas=1, config={})
    rev = ws.store.deployments.add_revision(
        "clf-api", model_name="clf", model_version=1, image_ref=None, image_digest=None, replicas=1
    )
    ws.store.deployments.finish_revision("clf-api", rev.revision, ok=True)
    calm = add_batch(ws, frame(800, seed=5).drop(columns=["y", "id"]), name="calm")
    result = modelyard.predict("clf@1", calm, output="calm-scores", workspace=ws)
    assert result.drift.report is not None
    assert not result.drift.report.drifted
    (check,) = result.checks
    assert (check.deployment, check.firings) == ("clf-api", ())

    drifted = add_batch(ws, frame(800, seed=6, shift=2.0).drop(columns=["y", "id"]), name="new")
    result = modelyard.predict("clf@1", drifted, output="new-scores", workspace=ws)
    report = result.drift.report
    assert report is not None
    assert report.drifted
    assert report.drifted_features == ["a"]
    (check,) = result.checks
    fired = {f.policy: f for f in check.firings}
    assert set(fired) == {"page-on-drift", "retrain-on-drift"}
    assert fired["page-on-drift"].outcome["status"] == "logged"  # no webhook configured
    assert fired["retrain-on-drift"].status == "fired"
    assert check.report.details["source"] == "batch"
    assert check.report.details["batch"] == {
        "output": "new-scores@1",
        "model": "clf@1",
        "rows": 800,
    }
    actions = {a.policy: a for a in ws.store.monitoring.actions("clf-api")}
    assert actions["retrain-on-drift"].report_id == check.report.id
    run = ws.store.runs.get(result.run_id)
    assert "batch-report.html" in {a.name for a in ws.store.runs.artifacts(run.id)}
    # the report of the deployment now shows the batch's drift, as `monitor report` writes it
    from modelyard.monitor.history import write_deployment_report

    html = write_deployment_report(ws, "clf-api", ws.root / "r.html").read_text()
    assert "Data drift" in html
    # --no-monitor: drift is measured, no policy runs
    quiet = modelyard.predict("clf@1", drifted, output="q", monitor=False, workspace=ws)
    assert quiet.checks == ()
    assert quiet.drift.report is not None
    ws.close()


def test_a_model_with_no_training_data_in_its_lineage_still_scores(
    sqlite_workspace: Workspace,
) -> None:
    from sklearn.linear_model import LogisticRegression

    ws = sqlite_workspace
    table = frame(100)
    model = LogisticRegression().fit(table[["a", "b"]], table["y"])
    with modelyard.start_run(name="train", workspace=ws) as run:
        run.log_model(model, "model", input_example=table[["a", "b"]].head(3))
    models.register(run.id, "plain", workspace=ws)
    ref = add_batch(ws, table[["a", "b"]])
    result = modelyard.predict("plain@1", ref, output="s", workspace=ws)
    assert result.drift.report is None
    assert "no dataset version upstream" in (result.drift.unavailable or "")
    assert result.rows == 100


def test_the_ready_pipeline_step_scores_an_upstream_dataset(sqlite_workspace: Workspace) -> None:
    from modelyard.pipeline.run import make_runner, run_pipeline

    ws = sqlite_workspace
    train_model(ws)
    models.promote("clf@1", "production", workspace=ws)
    (ws.root / "scoring.py").write_text(
        textwrap.dedent(
            """
            import numpy as np
            import pandas as pd
            import modelyard.data
            from modelyard.batch import predict_step
            from modelyard.pipeline import Pipeline, step

            @step(cache=False, outputs="to_score")
            def collect(rows: int = 120):
                rng = np.random.default_rng(7)
                frame = pd.DataFrame({"a": rng.normal(size=rows), "b": rng.normal(size=rows),
                                      "city": rng.choice(["x", "y"], size=rows)})
                frame.to_parquet("incoming.parquet", index=False)
                return modelyard.data.add("incoming.parquet", name="incoming").version

            score = predict_step(model="clf@production", output="nightly", input="to_score")
            pipeline = Pipeline("scoring", [collect, score])
            """
        )
    )
    run = run_pipeline(ws.root / "scoring.py", workspace=ws, runner=make_runner("local", ws))
    assert run.status == "finished", run.error
    version = data.show("nightly@1", workspace=ws)
    assert (version.profile or {})["row_count"] == 120
    up = build_lineage(ws, "nightly@1", direction="up", depth=3)
    reached = {(n.node_type, n.node_id) for n in up.walk()}
    assert ("model_version", "clf@1") in reached
    assert ("run", run.step("predict").run_id) in reached  # the step's run contains the job's


def test_predict_step_skips_until_a_model_exists(sqlite_workspace: Workspace) -> None:
    from modelyard.batch import predict_step

    step = predict_step(model="none@production", output="o", dataset="x@1", if_no_model="skip")
    assert step(data="x@1", **_defaults(step)) is None


def _defaults(fn: Any) -> dict[str, Any]:
    import inspect

    return {
        k: p.default
        for k, p in inspect.signature(fn).parameters.items()
        if p.default is not inspect.Parameter.empty and k != "data"
    }


# --- Kubernetes: an Indexed Job running the model image's runtime, one shard per index --------


@pytest.mark.slow
def test_kubernetes_job_validates_and_its_shards_score_every_row_once(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    import kubernetes_validate
    import yaml

    ws = sqlite_workspace
    model = train_model(ws)
    batch = frame(1000, seed=8).drop(columns=["y"])
    ref = add_batch(ws, batch)  # 4 row groups of 256 rows
    runner = CliRunner()
    args = ["predict", "clf@1", ref, "--output", "scores", "--columns", "id"]
    refused = runner.invoke(cli, [*args, "--target", "kubernetes", "--claim", "batch-data"])
    assert refused.exit_code == 2
    assert "--dry-run" in refused.output
    result = runner.invoke(
        cli,
        [
            *args,
            "--target",
            "kubernetes",
            "--claim",
            "batch-data",
            "--shards",
            "3",
            "--namespace",
            "ml",
            "--image",
            "registry.local:5000/models/clf:1",
            "--dry-run",
            "-o",
            "yaml",
        ],
    )
    assert result.exit_code == 0, result.output
    (job,) = list(yaml.safe_load_all(result.output))
    for version in ("1.30.0", "1.37.0"):
        kubernetes_validate.validate(job, version, strict=True)
    spec = job["spec"]
    assert (spec["completionMode"], spec["completions"], spec["parallelism"]) == ("Indexed", 3, 3)
    pod = spec["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "registry.local:5000/models/clf:1"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["automountServiceAccountToken"] is False
    assert job["metadata"]["annotations"]["io.modelyard/input"] == ref
    command = container["command"]
    assert command[1:3] == ["-m", "modelyard.serving.batch"]
    assert command[command.index("--input") + 1] == "/data/inputs/batch/1"
    assert command[command.index("--output") + 1] == "/data/outputs/scores"

    # What each pod runs, run here: three shards over the checked-out input, as the Job would.
    data.checkout(ref, tmp_path / "inputs" / "batch" / "1")
    model_dir = models.export_model(ws, models.resolve("clf@1", ws))
    tail = ["--model-dir", str(model_dir), "--input", str(tmp_path / "inputs" / "batch" / "1")]
    tail += ["--output", str(tmp_path / "outputs"), "--shards", "3", "--columns", "id"]
    for shard in range(3):
        env = {**os.environ, "JOB_COMPLETION_INDEX": str(shard)}
        done = subprocess.run(
            [sys.executable, "-m", "modelyard.serving.batch", *tail],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode == 0, done.stderr
    parts = sorted((tmp_path / "outputs").glob("part-*.parquet"))
    assert [p.name for p in parts] == [f"part-0000{i}.parquet" for i in range(3)]
    scored = pd.concat([pd.read_parquet(p) for p in parts]).sort_values("row_id")
    assert scored["row_id"].tolist() == list(range(1000))
    assert scored["id"].tolist() == batch["id"].tolist()
    assert scored["prediction"].tolist() == model.predict(batch[FEATURES]).tolist()
    # a shard's input that does not fit the signature fails the index with one line
    bad = subprocess.run(
        [sys.executable, "-m", "modelyard.serving.batch", *tail[:-2]],
        env={**os.environ, "JOB_COMPLETION_INDEX": "0"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: unknown column 'id'")


def test_kubernetes_job_refuses_csv_and_a_version_without_image(
    sqlite_workspace: Workspace,
) -> None:
    from modelyard.batch import plan_job
    from modelyard.errors import DeployError, InvalidParameter

    ws = sqlite_workspace
    train_model(ws)
    csv_ref = add_batch(ws, frame(10).drop(columns=["y", "id"]), name="c", fmt="csv")
    pq_ref = add_batch(ws, frame(10).drop(columns=["y", "id"]), name="p")
    with pytest.raises(InvalidParameter, match="store the input as Parquet"):
        plan_job("clf@1", csv_ref, output="s", claim="d", workspace=ws)
    with pytest.raises(DeployError, match="no pushed image"):
        plan_job("clf@1", pq_ref, output="s", claim="d", workspace=ws)
    ref = add_batch(ws, frame(10).drop(columns=["y"]), name="i")
    with pytest.raises(InvalidInput, match="unknown column 'id'"):
        plan_job("clf@1", ref, output="s", claim="d", image="r/x:1", workspace=ws)


# --- Ray: the same scoring on a local cluster ---------------------------------------------------


@pytest.fixture(scope="session")
def ray_cluster() -> Any:
    """The local cluster ``--engine ray`` starts for a job (the same function)."""
    ray = pytest.importorskip("ray")
    from modelyard.batch.engines import start_local_ray

    start_local_ray(num_cpus=2)
    yield ray
    ray.shutdown()


def _listening(pids: set[int]) -> list[tuple[int, str, int]]:
    """(pid, address, port) of every listening TCP socket (IPv4 and IPv6) the processes hold,
    read from /proc: each socket's inode in /proc/net/tcp{,6}, matched to the fds."""
    import ipaddress

    listening: dict[str, tuple[str, int]] = {}
    for table, size in (("/proc/net/tcp", 4), ("/proc/net/tcp6", 16)):
        with open(table) as fh:
            next(fh)
            for line in fh:
                fields = line.split()
                address, port = fields[1].split(":")
                if fields[3] != "0A":  # TCP_LISTEN
                    continue
                raw = bytes.fromhex(address)
                # each 32-bit word is in host (little-endian) order
                packed = b"".join(raw[i : i + 4][::-1] for i in range(0, size, 4))
                listening[fields[9]] = (str(ipaddress.ip_address(packed)), int(port, 16))
    found = []
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:["):
                inode = target[len("socket:[") : -1]
                if inode in listening:
                    found.append((pid, *listening[inode]))
    return found


@pytest.mark.slow
def test_the_local_ray_cluster_listens_on_loopback_only(ray_cluster: Any) -> None:
    import ipaddress

    import psutil

    @ray_cluster.remote
    def pid() -> int:
        return os.getpid()

    worker = ray_cluster.get(pid.remote())  # a worker is up: every kind of process is running
    ray_pids = {p.pid for p in psutil.Process().children(recursive=True)}
    assert worker in ray_pids
    sockets = _listening(ray_pids)
    names = {psutil.Process(p).name() for p, _, _ in sockets}
    assert {"gcs_server", "raylet"} <= names, names  # the scan does see Ray's servers

    def loopback(address: str) -> bool:
        ip = ipaddress.ip_address(address)
        mapped = getattr(ip, "ipv4_mapped", None)  # ::ffff:127.0.0.1, an IPv6 socket's view
        return (mapped or ip).is_loopback

    exposed = [s for s in sockets if not loopback(s[1])]
    assert not exposed, f"Ray listens beyond loopback: {exposed}"
    assert ray_cluster.util.get_node_ip_address() == "127.0.0.1"


@pytest.mark.slow
def test_ray_engine_scores_the_same_rows_as_the_local_one(
    sqlite_workspace: Workspace, ray_cluster: Any
) -> None:
    ws = sqlite_workspace
    train_model(ws)
    ref = add_batch(ws, frame(3000, seed=9).drop(columns=["y"]))
    local = modelyard.predict(
        "clf@1", ref, output="local", columns=["id"], batch_rows=250, workspace=ws
    )
    remote = modelyard.predict(
        "clf@1", ref, output="ray", columns=["id"], batch_rows=250, engine="ray", workspace=ws
    )
    assert remote.rows == 3000
    # identical bytes: row order, values and types all agree
    assert remote.output.digest == local.output.digest
    assert ws.store.runs.get(remote.run_id).params["engine"] == "ray"
    bad = add_batch(ws, frame(300, seed=9).drop(columns=["y", "id"]).assign(b=np.inf), name="inf")
    with pytest.raises(InvalidInput, match="Infinity"):
        modelyard.predict("clf@1", bad, output="never", engine="ray", batch_rows=100, workspace=ws)
    with pytest.raises(NotFound):
        data.versions("never", workspace=ws)


def test_prefetch_hands_over_items_and_errors_in_order_and_stops_early() -> None:
    import threading

    from modelyard.serving.batch import prefetch

    closed = []

    def items(fail_at: int | None = None) -> Any:
        try:
            for i in range(10):
                if i == fail_at:
                    raise ValueError(f"bad item {i}")
                yield i
        finally:
            closed.append(threading.current_thread().name)

    assert list(prefetch(items(), depth=2)) == list(range(10))
    got: list[int] = []
    with pytest.raises(ValueError, match="bad item 4"):
        got.extend(prefetch(items(fail_at=4)))
    assert got == [0, 1, 2, 3]  # everything before the error, in order
    early = prefetch(items(), depth=1)
    assert [next(early), next(early)] == [0, 1]
    early.close()  # the consumer stops: the producer stops and the source is closed
    assert len(closed) == 3
    assert not [t for t in threading.enumerate() if t.name == "modelyard-prefetch"]


def test_the_batch_writer_raises_the_writers_error_and_abort_drops_the_rest(
    tmp_path: Path,
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from modelyard.serving.batch import BatchWriter

    good = pa.RecordBatch.from_pydict({"row_id": pa.array([0, 1], pa.int64())})
    with BatchWriter(tmp_path / "ok.parquet") as writer:
        for _ in range(5):
            writer.write(good)
    assert pq.read_table(tmp_path / "ok.parquet").num_rows == 10
    wrong = pa.RecordBatch.from_pydict({"other": pa.array(["x"])})
    writer = BatchWriter(tmp_path / "bad.parquet", depth=1)
    writer.write(good)

    def write_all() -> None:
        writer.write(wrong)
        for _ in range(3):  # the error surfaces at a later write at the latest
            writer.write(good)
        writer.close()

    with pytest.raises(Exception, match="schema"):  # pyarrow: the batch does not fit the file
        write_all()
    writer.abort()  # idempotent after an error: nothing hangs


@pytest.mark.parametrize("kind", ["forest", "tree", "logistic", "multiclass", "bayes"])
def test_predictions_with_probabilities_match_the_estimator(tmp_path: Path, kind: str) -> None:
    """One pass gives both for the classifiers whose predict is argmax(proba); the rest are
    called twice — either way the predictions are the estimator's own."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.naive_bayes import GaussianNB
    from sklearn.tree import DecisionTreeClassifier

    from modelyard.flavors import load_model, save_model

    rng = np.random.default_rng(11)
    x = pd.DataFrame(rng.normal(size=(400, 4)), columns=list("abcd"))
    y = (x["a"] + x["b"] > 0).astype(int) + (kind == "multiclass") * (x["c"] > 1)
    model: Any = {
        "forest": RandomForestClassifier(n_estimators=15, random_state=0),
        "tree": DecisionTreeClassifier(random_state=0),
        "logistic": LogisticRegression(),
        "multiclass": LogisticRegression(),
        "bayes": GaussianNB(),  # not on the argmax list: predict is called as well
    }[kind].fit(x, y)
    save_model(model, tmp_path / "m", input_example=x.head(3))
    loaded = load_model(tmp_path / "m")
    predictions, proba = loaded.predict_with_proba({c: x[c].to_numpy() for c in x.columns})
    assert predictions.tolist() == model.predict(x).tolist()  # type: ignore[union-attr]
    np.testing.assert_allclose(proba, model.predict_proba(x))
    assert loaded.classes == model.classes_.tolist()


def test_an_untrusted_python_model_is_refused_before_any_output(
    sqlite_workspace: Workspace,
) -> None:
    from _models import AddOne
    from modelyard.errors import UnsafeModel

    ws = sqlite_workspace
    table = frame(20)[["a", "b"]]
    with modelyard.start_run(name="train", workspace=ws) as run:
        run.log_model(AddOne(), "model", input_example=table.head(3))
    models.register(run.id, "code", workspace=ws)
    ref = add_batch(ws, table)
    with pytest.raises(UnsafeModel, match="no admin has trusted it"):
        modelyard.predict("code@1", ref, output="s", workspace=ws)
    with pytest.raises(NotFound):
        data.versions("s", workspace=ws)
