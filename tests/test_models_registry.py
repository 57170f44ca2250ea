"""The model registry through its Python API, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelyard.models as models
from _models import expected_actor
from modelyard.errors import (
    ConfigError,
    InvalidName,
    InvalidParameter,
    InvalidReference,
    NotFound,
    UsageError,
)
from modelyard.workspace import Workspace

pytestmark = pytest.mark.remote  # the same tests against a team server too

pytest.importorskip("sklearn")
pytest.importorskip("skops")


@pytest.fixture(scope="module")
def trained() -> tuple[Any, np.ndarray]:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 3))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    return LogisticRegression().fit(x, y), x


def train_run(ws: Workspace, trained: tuple[Any, np.ndarray], **metrics: float) -> str:
    from modelyard.tracking import start_run

    model, x = trained
    with start_run("train", workspace=ws, params={"C": 1.0}) as run:
        run.log_metrics(metrics)
        logged = run.log_model(model, "model", input_example=x[:5])
        assert logged.run_id == run.id
        return run.id


def test_log_model_then_register_by_run_and_by_path(
    workspace: Workspace, trained: tuple[Any, np.ndarray], tmp_path: Path
) -> None:
    from modelyard.flavors import save_model
    from modelyard.tracking import start_run

    model, x = trained
    with start_run("train", workspace=workspace) as run:
        logged = run.log_model(model, "model", input_example=x[:5])
    assert logged.flavor.startswith("sklearn")
    assert logged.signature is not None
    assert len(logged.signature["inputs"]) >= 1
    artifacts = {a.name: a for a in workspace.store.runs.artifacts(run.id)}
    assert artifacts["model"].digest == logged.digest
    assert artifacts["model"].kind == "directory"

    v1 = models.register(run.id[:8], "churn", workspace=workspace)
    assert (v1.name, v1.version, v1.run_id, v1.digest) == ("churn", 1, run.id, logged.digest)
    assert v1.flavor == logged.flavor
    assert "scikit-learn" in (v1.requirements or {})
    assert _is_actor(workspace, v1.created_by)
    assert v1.source == f"run:{run.id}/model"

    folder = tmp_path / "saved"
    save_model(model, folder, input_example=x[:5])
    v2 = models.register(folder, "churn", description="from disk", workspace=workspace)
    assert (v2.version, v2.run_id, v2.description) == (2, None, "from disk")
    # Linked to the run: a third version, unless the saved folder holds exactly the bytes the
    # run logged, which that run already registered as v1 (one key per model, run, content).
    v3 = models.register(str(folder), "churn", run=run.id, workspace=workspace)
    expected = 1 if v3.digest == v1.digest else 3
    assert (v3.version, v3.run_id) == (expected, run.id)
    assert [v.version for v in models.list_versions("churn", workspace)] == sorted({1, 2, expected})

    edges = {
        (e.source_type, e.source_id, e.target_id)
        for e in workspace.store.lineage.edges_to("model_version", "churn@1")
    }
    assert ("run", run.id, "churn@1") in edges
    assert ("artifact", logged.digest, "churn@1") in edges


def test_register_refuses_bad_sources(
    workspace: Workspace, trained: tuple[Any, np.ndarray], tmp_path: Path
) -> None:
    from modelyard.tracking import start_run

    with start_run("empty", workspace=workspace) as run:
        run.log_metric("f1", 0.5)
    with pytest.raises(NotFound, match=r"has no logged model; log one with run.log_model"):
        models.register(run.id, "churn", workspace=workspace)
    with pytest.raises(NotFound, match="neither a model folder nor a run id"):
        models.register("no-such-thing", "churn", workspace=workspace)
    with pytest.raises(NotFound, match="no run 'abcdef12'"):
        models.register("abcdef12", "churn", workspace=workspace)
    (tmp_path / "plain").mkdir()
    with pytest.raises(NotFound, match="has no modelyard-model.json"):
        models.register(tmp_path / "plain", "churn", workspace=workspace)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "modelyard-model.json").write_text(json.dumps({"flavor": ""}))
    with pytest.raises(Exception, match="no valid 'flavor'"):
        models.register(bad, "churn", workspace=workspace)
    for name in ("../evil", "a/b", ""):
        with pytest.raises(InvalidName):
            models.register(tmp_path / "plain", name, workspace=workspace)
    run_id = train_run(workspace, trained, f1=0.9)
    with pytest.raises(NotFound, match="has no logged model 'weights' \\(it has: model\\)"):
        models.register(run_id, "churn", artifact="weights", workspace=workspace)
    assert workspace.store.models.all() == []


def test_aliases_move_with_history_and_resolve(
    workspace: Workspace, trained: tuple[Any, np.ndarray], tmp_path: Path
) -> None:
    run_id = train_run(workspace, trained, f1=0.9)
    v1 = models.register(run_id, "churn", workspace=workspace)
    # The same content again, as a folder (a second registration from the run is v1 itself).
    workspace.artifacts.export_dir(v1.digest, tmp_path / "copy")
    v2 = models.register(tmp_path / "copy", "churn", workspace=workspace)
    models.promote("churn@1", "production", reason="first", workspace=workspace)
    models.promote("churn@2", "production", reason="better", workspace=workspace)
    models.promote("churn@1", "staging", workspace=workspace)

    assert models.resolve("churn@production", workspace).version == 2
    assert models.resolve("churn@staging", workspace).version == 1
    assert models.resolve("churn", workspace).version == 2
    assert models.resolve("churn@latest", workspace).version == 2
    assert models.resolve(f"churn@{v1.digest}", workspace).version == 2  # newest with it
    assert models.resolve("churn@2", workspace).aliases == ("production",)
    assert models.get_model("churn", workspace).aliases == {"production": 2, "staging": 1}

    history = models.alias_history("churn", "production", workspace=workspace)
    assert [(m.from_version, m.to_version, m.reason) for m in history] == [
        (None, 1, "first"),
        (1, 2, "better"),
    ]
    assert all(_is_actor(workspace, m.actor) and not m.forced for m in history)
    assert history[0].moved_at <= history[1].moved_at

    removed = models.remove_alias("churn", "staging", reason="gone", workspace=workspace)
    assert (removed.from_version, removed.to_version) == (1, None)
    with pytest.raises(NotFound, match="has no alias 'staging'"):
        models.resolve("churn@staging", workspace)

    models.archive("churn@2", workspace)
    assert models.resolve("churn@latest", workspace).version == 1
    assert models.resolve("churn@production", workspace).status == "archived"
    models.unarchive("churn@2", workspace)
    assert v2.version == models.resolve("churn", workspace).version


def test_resolve_errors(workspace: Workspace, trained: tuple[Any, np.ndarray]) -> None:
    run_id = train_run(workspace, trained, f1=0.9)
    models.register(run_id, "churn", workspace=workspace)
    with pytest.raises(NotFound, match="no registered model named 'nope'"):
        models.resolve("nope@1", workspace)
    with pytest.raises(NotFound, match=r"has no version 7 \(latest is churn@1\)"):
        models.resolve("churn@7", workspace)
    with pytest.raises(InvalidReference):
        models.resolve("churn@bad alias!", workspace)
    with pytest.raises(InvalidReference):
        models.resolve("../churn@1", workspace)
    with pytest.raises(InvalidName, match="alias"):
        models.promote("churn@1", "9lives", workspace=workspace)
    with pytest.raises(InvalidName, match="alias"):
        models.promote("churn@1", "latest", workspace=workspace)
    with pytest.raises(InvalidReference, match="NAME@NUMBER"):
        models.archive("churn@latest", workspace)


def test_parse_check_is_safe_and_names_the_expression() -> None:
    check = models.parse_check("f1 >= production.f1 - 0.01")
    assert (check.metric, check.op, check.alias, check.alias_metric, check.offset) == (
        "f1",
        ">=",
        "production",
        "f1",
        -0.01,
    )
    assert models.parse_check("val.loss < 0.3").value == 0.3
    assert models.parse_check("auc>=staging.auc+1e-3").offset == pytest.approx(0.001)
    for bad in (
        "f1 >== 0.8",
        "__import__('os').system('x') > 1",
        "f1 >= 0.8 or True",
        "f1",
        "f1 >= production.",
        ">= 0.8",
    ):
        with pytest.raises(InvalidParameter, match=re.escape(f"gate check {bad!r} is not valid")):
            models.parse_check(bad)


def _with_config(ws: Workspace, toml: str) -> Workspace:
    config = ws.root / "modelyard.toml"
    config.write_text(config.read_text() + "\n" + toml)
    return Workspace.at(ws.root)  # the fixture points the environment at its store


def test_gate_from_config_refuses_forces_and_records(
    workspace: Workspace, trained: tuple[Any, np.ndarray]
) -> None:
    ws = _with_config(
        workspace,
        '[models.gates.churn]\nchecks = ["f1 >= 0.80", "f1 >= production.f1 - 0.01"]\n'
        'aliases = ["production"]\n',
    )
    try:
        good = models.register(train_run(ws, trained, f1=0.85), "churn", workspace=ws)
        first = models.promote(good.ref, "production", workspace=ws)
        assert [r.passed for r in first.report.results] == [True, True]
        assert "skipped" in first.report.results[1].detail

        worse = models.register(train_run(ws, trained, f1=0.83), "churn", workspace=ws)
        with pytest.raises(models.PromotionRefused) as info:
            models.promote(worse.ref, "production", workspace=ws)
        assert info.value.exit_code == 1
        failed = info.value.report.failed
        assert [r.check for r in failed] == ["f1 >= production.f1 - 0.01"]
        assert failed[0].threshold == pytest.approx(0.84)
        assert models.resolve("churn@production", ws).version == 1  # nothing moved

        models.promote(worse.ref, "staging", workspace=ws)  # not guarded
        forced = models.promote(worse.ref, "production", force=True, reason="hotfix", workspace=ws)
        assert forced.move.forced is True
        last = models.alias_history("churn", "production", workspace=ws)[-1]
        assert (last.from_version, last.to_version, last.forced, last.reason) == (
            1,
            2,
            True,
            "hotfix",
        )
        assert last.failed_checks is not None
        assert last.failed_checks[0].startswith("f1 >= production.f1 - 0.01:")
    finally:
        ws.close()


def test_gate_requires_approval_and_model_gate(
    workspace: Workspace, trained: tuple[Any, np.ndarray]
) -> None:
    version = models.register(train_run(workspace, trained, f1=0.7), "churn", workspace=workspace)
    models.set_gate("churn", ["f1 >= 0.6"], require_approval=True, workspace=workspace)
    report = models.check_promotion("churn@1", "production", workspace=workspace)
    assert [(r.check, r.passed) for r in report.results] == [
        ("f1 >= 0.6", True),
        ("approval", False),
    ]
    with pytest.raises(models.PromotionRefused, match="1 gate check"):
        models.promote(version.ref, "production", workspace=workspace)
    approval = models.approve("churn@1", comment="looks good", workspace=workspace)
    assert approval.comment == "looks good"
    assert _is_actor(workspace, approval.actor)
    done = models.promote(version.ref, "production", workspace=workspace)
    assert done.move.forced is False
    with pytest.raises(InvalidParameter, match="'f1 => 1'"):
        models.set_gate("churn", ["f1 => 1"], workspace=workspace)


def test_gate_config_syntax_error_names_the_expression(
    workspace: Workspace, trained: tuple[Any, np.ndarray]
) -> None:
    models.register(train_run(workspace, trained, f1=0.7), "churn", workspace=workspace)
    ws = _with_config(workspace, '[models.gate]\nchecks = ["f1 >= = 0.8"]\n')
    try:
        with pytest.raises(ConfigError, match=r"\[models.gate\]: gate check 'f1 >= = 0.8'"):
            models.promote("churn@1", "production", workspace=ws)
    finally:
        ws.close()


def test_missing_metric_and_no_run_fail_the_check(
    workspace: Workspace, trained: tuple[Any, np.ndarray], tmp_path: Path
) -> None:
    from modelyard.flavors import save_model

    model, x = trained
    save_model(model, tmp_path / "m", input_example=x[:5])
    models.register(tmp_path / "m", "churn", workspace=workspace)
    models.register(train_run(workspace, trained, auc=0.9), "churn", workspace=workspace)
    models.set_gate("churn", ["f1 >= 0.5"], workspace=workspace)
    no_run = models.check_promotion("churn@1", "production", workspace=workspace)
    assert "has no run" in no_run.results[0].detail
    assert not no_run.passed
    no_metric = models.check_promotion("churn@2", "production", workspace=workspace)
    assert "logged no metric 'f1'" in no_metric.results[0].detail


def test_tags_descriptions_diff_and_lineage(
    workspace: Workspace, trained: tuple[Any, np.ndarray]
) -> None:
    from modelyard.lineage import build_lineage

    models.register(train_run(workspace, trained, f1=0.8), "churn", workspace=workspace)
    models.register(
        train_run(workspace, trained, f1=0.9), "churn", tags={"team": "a"}, workspace=workspace
    )
    tagged = models.set_tags("churn@1", {"owner": "kim", "team": "b"}, workspace)
    assert tagged.tags == {"owner": "kim", "team": "b"}
    assert models.remove_tags("churn@1", ["owner"], workspace).tags == {"team": "b"}
    models.describe("churn@1", "baseline", workspace)
    models.describe("churn", "predicts churn", workspace)
    assert models.resolve("churn@1", workspace).description == "baseline"
    assert models.get_model("churn", workspace).description == "predicts churn"

    d = models.diff("churn@1", "churn@2", workspace)
    assert d.metrics == {"f1": (0.8, 0.9)}
    assert d.params == {}
    assert "run" in d.fields
    assert "flavor" not in d.fields
    assert not d.identical

    tree = build_lineage(workspace, "churn@2", direction="up")
    kinds = {(n.node_type, n.relation) for n in tree.walk()}
    assert ("run", "output") in kinds
    assert tree.label.startswith("model churn@2")
    with pytest.raises(UsageError):
        models.set_tags("churn@1", {"": "x"}, workspace)


def test_public_api_is_complete() -> None:
    public = {n for n in dir(models) if not n.startswith("_")} - {
        "aliases",
        "diff",
        "gates",
        "lineage",
        "log",
        "manage",
        "register",
        "resolve",
        "serve",
        "trust",
        "provenance",
        "TYPE_CHECKING",
        "Any",
    }
    assert public <= set(models.__all__)
    for name in models.__all__:
        assert getattr(models, name) is not None


def _is_actor(ws: Workspace, actor: str | None) -> bool:
    return actor == expected_actor(ws)
