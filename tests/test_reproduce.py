"""``modelyard reproduce``: the same artifact digest from the recorded inputs, and the right row
and reason when an input changed.

Each subject is real: a git repository in ``tmp_path`` holding a scikit-learn script (or the
maintenance example's pipeline), run the way a user runs it (``python train.py``, ``modelyard
pipeline run``), its model registered, then reproduced — in a temporary git worktree of the
recorded commit, a child process and (once, slow) a fresh venv built from the recorded lock.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import modelyard.data
from modelyard import models
from modelyard.cli.main import cli
from modelyard.reproduce import DIFFERS, MATCHED, NOT_CHECKED, Reproduction, reproduce
from modelyard.workspace import Workspace

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "maintenance"

TRAIN = """\
import os
import modelyard
import modelyard.data
from sklearn.ensemble import RandomForestClassifier

N = int(os.environ.get("N_EST", "5"))  # an input no record captures
with modelyard.start_run(name="train", params={"n_estimators": N, "seed": 7}) as run:
    version = run.use_dataset("points")
    frame = modelyard.data.read_frame(version.ref)
    x = frame[["a", "b"]]
    model = RandomForestClassifier(n_estimators=N, random_state=7).fit(x, frame["y"])
    run.log_model(model, input_example=x.head(2))
    print(run.id)
"""


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def points(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    a, b = rng.normal(size=200), rng.normal(size=200)
    return pd.DataFrame({"a": a, "b": b, "y": (a + b > 0).astype(int)})


def run_script(repo: Path, python: str = sys.executable, **env: str) -> str:
    done = subprocess.run(
        [python, "train.py"],
        cwd=repo,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip().splitlines()[-1]


def statuses(result: Reproduction) -> dict[str, str]:
    return {row.name: row.status for row in result.rows}


def reason(result: Reproduction, row: str) -> str:
    return result.row(row).reason


@pytest.fixture
def script_repo(tmp_path: Path) -> Iterator[tuple[Path, Workspace]]:
    """A git repository that is a workspace, with ``train.py`` committed and dataset
    ``points@1`` added."""
    repo = tmp_path / "proj"
    ws, _ = Workspace.init(repo)
    (repo / "train.py").write_text(TRAIN)
    (repo / ".gitignore").write_text("*.csv\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "train")
    points(1).to_csv(repo / "points.csv", index=False)
    modelyard.data.add(repo / "points.csv", name="points", workspace=ws)
    with ws:
        yield repo, ws


@pytest.mark.slow
def test_a_script_run_is_reproduced_to_the_same_digest(
    script_repo: tuple[Path, Workspace],
) -> None:
    repo, ws = script_repo
    run_id = run_script(repo)
    assert '"script": "train.py"' in ws.store.runs.get(run_id).tags["modelyard.source"]
    version = models.register(run_id, "clf", workspace=ws)
    # A newer version of the dataset: the re-run still reads the one the run read.
    points(2).to_csv(repo / "points.csv", index=False)
    modelyard.data.add(repo / "points.csv", name="points", workspace=ws)

    result = reproduce("clf@1", workspace=ws, env="current")

    assert statuses(result) == dict.fromkeys(statuses(result), MATCHED), result.rows
    assert result.identical
    assert result.new_digest == version.digest
    assert "points@1" in reason(result, "data")
    assert "points@2" not in reason(result, "data")
    assert "checked out clean" in reason(result, "code")
    assert "--env current" in reason(result, "environment")
    assert reason(result, "parameters") == "n_estimators=5, seed=7"
    new = ws.store.runs.get(result.run_id or "")
    assert new.tags["modelyard.reproduces"] == run_id
    assert new.git_commit == git(repo, "rev-parse", "HEAD").strip()
    assert git(repo, "worktree", "list").count("\n") == 1  # the temporary worktree is gone

    out = CliRunner().invoke(
        cli, ["-C", str(repo), "reproduce", "clf@1", "--env", "current", "--check"]
    )
    assert out.exit_code == 0, out.output
    assert "artifact digest identical" in out.output
    for row in ("data", "code", "environment", "parameters", "artifact"):
        assert row in out.output


@pytest.mark.slow
def test_an_input_outside_the_records_shows_in_the_parameters_row(
    script_repo: tuple[Path, Workspace], monkeypatch: pytest.MonkeyPatch
) -> None:
    repo, ws = script_repo
    models.register(run_script(repo, N_EST="5"), "clf", workspace=ws)
    monkeypatch.setenv("N_EST", "3")

    result = reproduce("clf@1", workspace=ws, env="current")

    assert statuses(result) == {
        "data": MATCHED,
        "code": MATCHED,
        "environment": MATCHED,
        "parameters": DIFFERS,
        "artifact": DIFFERS,
    }
    assert reason(result, "parameters") == "n_estimators=3 where the run had 5"
    assert "changed: model.skops" in reason(result, "artifact")
    out = CliRunner().invoke(
        cli, ["-C", str(repo), "reproduce", "clf@1", "--env", "current", "--check"]
    )
    assert out.exit_code == 1, out.output
    assert "NOT identical" in out.output


@pytest.mark.slow
def test_a_dirty_tree_needs_its_patch(script_repo: tuple[Path, Workspace], tmp_path: Path) -> None:
    repo, ws = script_repo
    train = repo / "train.py"
    train.write_text(train.read_text().replace('"seed": 7', '"seed": 8'))
    patch = tmp_path / "changes.patch"
    patch.write_bytes(
        subprocess.run(
            ["git", "diff", "HEAD", "--binary"], cwd=repo, capture_output=True, check=True
        ).stdout
    )
    run_id = run_script(repo)
    git(repo, "checkout", "--", "train.py")  # the tree is clean again
    run = ws.store.runs.get(run_id)
    assert run.git_dirty is True
    models.register(run_id, "clf", workspace=ws)

    refused = reproduce("clf@1", workspace=ws, env="current")
    assert statuses(refused)["code"] == DIFFERS
    assert "uncommitted changes" in reason(refused, "code")
    assert "--patch FILE" in reason(refused, "code")
    assert statuses(refused)["artifact"] == NOT_CHECKED
    assert not refused.identical

    wrong = tmp_path / "wrong.patch"
    wrong.write_bytes(patch.read_bytes().replace(b"8", b"9"))
    mismatch = reproduce("clf@1", workspace=ws, env="current", patch=wrong)
    assert f"but the run's uncommitted changes were {run.git_diff_digest}" in reason(
        mismatch, "code"
    )

    result = reproduce("clf@1", workspace=ws, env="current", patch=patch)
    assert result.identical, result.rows
    assert "plus --patch" in reason(result, "code")
    assert statuses(result)["code"] == MATCHED
    assert reason(result, "parameters") == "n_estimators=5, seed=8"


def test_a_tampered_dataset_is_refused_before_anything_runs(
    script_repo: tuple[Path, Workspace],
) -> None:
    repo, ws = script_repo
    models.register(run_script(repo), "clf", workspace=ws)
    digest = modelyard.data.resolve("points@1", workspace=ws).digest
    blob = ws.artifacts.local_path(digest)
    blob.chmod(0o644)
    blob.write_bytes(blob.read_bytes() + b"0,0,0\n")

    result = reproduce("clf@1", workspace=ws, env="current")

    assert statuses(result)["data"] == DIFFERS
    assert "points@1 no longer matches its digest" in reason(result, "data")
    assert statuses(result)["artifact"] == NOT_CHECKED
    assert reason(result, "artifact").startswith("not re-run: data")


def test_a_run_without_a_commit_says_so_per_row(tmp_path: Path) -> None:
    folder = tmp_path / "plain"  # a workspace, but no git repository
    ws, _ = Workspace.init(folder)
    (folder / "train.py").write_text(TRAIN)
    points(1).to_csv(folder / "points.csv", index=False)
    with ws:
        modelyard.data.add(folder / "points.csv", name="points", workspace=ws)
        run_id = run_script(folder)
        assert ws.store.runs.get(run_id).git_commit is None
        models.register(run_id, "clf", workspace=ws)

        result = reproduce("clf@1", workspace=ws, env="current")

    assert statuses(result)["code"] == DIFFERS
    assert "recorded no git commit" in reason(result, "code")
    assert str(folder) in reason(result, "code")
    assert statuses(result)["data"] == NOT_CHECKED  # checked, but nothing was re-run
    assert "points@1" in reason(result, "data")
    assert statuses(result)["artifact"] == NOT_CHECKED
    assert "recorded no git commit" in reason(result, "artifact")
    out = CliRunner().invoke(cli, ["-C", str(folder), "reproduce", "clf@1", "--check"])
    assert out.exit_code == 1, out.output


def test_a_version_registered_from_a_folder_has_nothing_to_re_run(
    script_repo: tuple[Path, Workspace], tmp_path: Path
) -> None:
    repo, ws = script_repo
    run_id = run_script(repo)
    folder = tmp_path / "exported"
    ws.artifacts.export_dir(_model_digest(ws, run_id), folder)
    models.register(folder, "clf", workspace=ws)
    result = reproduce("clf@1", workspace=ws, env="current")
    assert statuses(result)["artifact"] == DIFFERS
    assert "not from a tracked run" in reason(result, "code")


def _model_digest(ws: Workspace, run_id: str) -> str:
    return next(a.digest for a in ws.store.runs.artifacts(run_id) if a.name == "model")


# -- the maintenance example -------------------------------------------------------------------


@pytest.fixture(scope="module")
def maintenance(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Workspace]]:
    """The maintenance example in a git repository of its own, run once by ``modelyard
    pipeline run`` (20 trees) and its model registered as ``maintenance@1``."""
    repo = tmp_path_factory.mktemp("maintenance") / "repo"
    ws, _ = Workspace.init(repo)
    for name in ("pipeline.py", "generate.py"):
        shutil.copy(EXAMPLE / name, repo / name)
    (repo / ".gitignore").write_text("data/\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "maintenance example")
    subprocess.run(
        [sys.executable, "generate.py", "--out", "data/incoming/batch-001.csv", "--rows", "3000"],
        cwd=repo,
        check=True,
        capture_output=True,
    )
    modelyard_cli = str(Path(sys.executable).parent / "modelyard")
    done = subprocess.run(
        [modelyard_cli, "pipeline", "run", "pipeline.py", "-p", "n_estimators=20"],
        cwd=repo,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    with ws:
        (pipe,) = ws.store.pipelines.list("maintenance")
        models.register(pipe.id, "maintenance", workspace=ws)
        yield repo, ws


@pytest.mark.slow
def test_the_maintenance_model_is_reproduced_to_the_same_digest(
    maintenance: tuple[Path, Workspace],
) -> None:
    repo, ws = maintenance
    version = models.resolve("maintenance@1", ws)

    result = reproduce("maintenance@1", workspace=ws, env="current")

    assert result.identical, result.rows
    assert result.new_digest == version.digest
    assert set(statuses(result).values()) == {MATCHED}, result.rows
    assert "sensors@1" in reason(result, "data")
    assert "n_estimators=20" in reason(result, "parameters")
    new = ws.store.runs.get(result.run_id or "")
    assert new.tags["modelyard.step"] == "register"
    (replayed,) = [p for p in ws.store.pipelines.list("maintenance") if p.id == new.parent_id]
    assert [s.step for s in replayed.steps] == [
        "collect",
        "validate",
        "prepare",
        "train",
        "evaluate",
        "register",
    ]  # only what the model needs; featurize and predict do not run
    assert replayed.step("collect").status == "reused"  # the data, taken over by digest


@pytest.mark.slow
def test_a_changed_pipeline_parameter_is_named(maintenance: tuple[Path, Workspace]) -> None:
    repo, ws = maintenance
    result = reproduce("maintenance@1", workspace=ws, env="current", params={"n_estimators": "10"})
    assert statuses(result)["parameters"] == DIFFERS
    assert reason(result, "parameters") == "n_estimators=10 (--param) where the run had 20"
    assert statuses(result)["artifact"] == DIFFERS
    assert "model.skops" in reason(result, "artifact")
    assert statuses(result)["data"] == MATCHED


# -- a fresh venv from the lock ----------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.timeout(2400)
def test_a_fresh_venv_from_the_lock_gives_the_same_digest(
    script_repo: tuple[Path, Workspace], tmp_path: Path
) -> None:
    """The run itself happens in a small venv (modelyard and scikit-learn, ~40 packages), so
    the venv reproduce builds from its lock is small too."""
    from modelyard.images.wheelhouse import build_modelyard_wheel, lock_from_environment

    repo, ws = script_repo
    small = tmp_path / "small-venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(small)], check=True)
    python = str(small / "bin" / "python")
    lock = lock_from_environment(["modelyard[ml]"])
    pip = [sys.executable, "-m", "pip", "--python", python, "install", "--no-deps", "--quiet"]
    subprocess.run(
        [*pip, *(f"{n}=={v}" for n, v in lock.items()), str(build_modelyard_wheel(tmp_path))],
        check=True,
        capture_output=True,
    )
    run_id = run_script(repo, python=python)
    models.register(run_id, "clf", workspace=ws)

    result = reproduce("clf@1", workspace=ws)

    assert result.identical, result.rows
    assert set(statuses(result).values()) == {MATCHED}, result.rows
    assert "a fresh venv of Python" in reason(result, "environment")
    assert "the same lock as the run" in reason(result, "environment")


def test_a_recorded_command_cannot_lead_out_of_the_checkout(
    script_repo: tuple[Path, Workspace],
) -> None:
    """Tags can be edited by anyone who may write runs: the recorded script path is checked."""
    import json

    from sklearn.dummy import DummyClassifier

    import modelyard

    repo, ws = script_repo
    with modelyard.start_run(name="train", workspace=ws) as run:
        assert "modelyard.source" not in ws.store.runs.get(run.id).tags  # pytest is __main__
        run.set_tag(
            "modelyard.source",
            json.dumps({"script": "../../evil.py", "module": None, "args": [], "cwd": "."}),
        )
        x = points(1)[["a", "b"]]
        run.log_model(DummyClassifier().fit(x, [0] * len(x)), input_example=x.head(2))
    models.register(run.id, "clf", workspace=ws)

    result = reproduce("clf@1", workspace=ws, env="current")

    assert statuses(result)["code"] == DIFFERS
    assert "the recorded script '../../evil.py' is outside the repository" in reason(result, "code")
    assert result.run_id is None
