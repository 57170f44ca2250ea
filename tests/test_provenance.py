"""Versions made by pipelines know what trained them, names in ``lineage`` are never silently
picked, and one artifact from one run is one version.

Found on main: image label ``io.modelyard.datasets`` was empty and ``models diff`` showed no
params or datasets for pipeline-made versions; ``models register PIPELINE_RUN`` did not find the
step run that logged the model; ``lineage cancer@1`` picked the dataset when a model had the
same name; a retrain refused by its gate, then retried, registered the same artifact twice.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import modelyard.data
import modelyard.models as models
from modelyard.cli.main import cli
from modelyard.errors import InvalidReference
from modelyard.lineage import build_lineage
from modelyard.packaging.dockerfile import lineage_labels
from modelyard.pipeline.run import run_pipeline
from modelyard.pipeline.runners.local import InProcessRunner
from modelyard.tracking import start_run
from modelyard.workspace import Workspace

PIPELINE = """
import numpy as np
from modelyard.store.data_entities import DatasetVersion
from modelyard.pipeline import Pipeline, current_run, step

@step(cache=False)
def snapshot(dataset: str = "readings") -> DatasetVersion:
    import modelyard.data
    return modelyard.data.show(f"{dataset}@latest")

@step
def prepare(snapshot: DatasetVersion) -> dict:
    import modelyard.data
    frame = modelyard.data.read_frame(snapshot.ref)
    return {"x": frame[["a", "b"]].to_numpy().tolist(), "y": frame["y"].tolist()}

@step(outputs="model")
def train(prepare: dict, c: float = 0.5):
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(C=c).fit(np.array(prepare["x"]), np.array(prepare["y"]))

@step(cache=False)
def hand_over(model, prepare: dict) -> str:
    from modelyard.models import log_model
    run = current_run().run
    run.log_metric("rows", len(prepare["y"]))
    return log_model(run, model, "model", input_example=np.array(prepare["x"][:3])).digest

pipeline = Pipeline("readings", [snapshot, prepare, train, hand_over])
"""


def _dataset(ws: Workspace, name: str = "readings") -> str:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(60, 2)), columns=["a", "b"])
    frame["y"] = (frame["a"] > 0).astype(int)
    csv = ws.root / f"{name}.csv"
    frame.to_csv(csv, index=False)
    return modelyard.data.add(csv, name=name, workspace=ws).version.ref


@pytest.fixture
def pipeline_run(sqlite_workspace: Workspace) -> tuple[Workspace, str, str]:
    ws = sqlite_workspace
    dataset = _dataset(ws)
    path = ws.root / "pipeline.py"
    path.write_text(textwrap.dedent(PIPELINE))
    run = run_pipeline(path, workspace=ws, params={"c": 0.25}, runner=InProcessRunner())
    assert run.status == "finished", [(s.step, s.error) for s in run.steps]
    return ws, run.id, dataset


def test_register_a_pipeline_run_finds_the_step_that_logged_the_model(
    pipeline_run: tuple[Workspace, str, str],
) -> None:
    ws, pipeline_id, dataset = pipeline_run
    result = CliRunner().invoke(
        cli, ["-C", str(ws.root), "models", "register", pipeline_id, "--name", "readings"]
    )
    assert result.exit_code == 0, result.output
    version = models.resolve("readings@1", ws)
    step = ws.store.pipelines.get(pipeline_id).step("hand_over")
    assert version.run_id == step.run_id  # the step run that holds the model

    # The image labels and diff reach the dataset the first step read, and the params.
    assert lineage_labels(ws, version)["io.modelyard.datasets"] == dataset
    again = models.register(pipeline_id, "readings", workspace=ws)
    assert again.version == 1  # same content, same run: the same version
    other = models.register(version.run_id or "", "readings-b", workspace=ws)
    diff = models.diff("readings@1", "readings-b@1", workspace=ws)
    assert diff.params == {}  # identical provenance: nothing differs
    found = models.provenance(ws, version)
    assert found.params["c"] == "0.25"
    assert found.datasets == {"readings": dataset}
    assert found.metrics["rows"] == 60
    assert other.version == 1


def test_models_diff_shows_params_and_datasets_of_pipeline_versions(
    pipeline_run: tuple[Workspace, str, str],
) -> None:
    ws, first_id, first_dataset = pipeline_run
    models.register(first_id, "readings", workspace=ws)
    second_dataset = _dataset(ws, "readings")  # unchanged content → the same version
    assert second_dataset == first_dataset
    rng = np.random.default_rng(1)
    frame = pd.DataFrame(rng.normal(size=(80, 2)), columns=["a", "b"])
    frame["y"] = (frame["b"] > 0).astype(int)
    frame.to_csv(ws.root / "readings.csv", index=False)
    new_dataset = modelyard.data.add(ws.root / "readings.csv", name="readings", workspace=ws)
    second = run_pipeline(
        ws.root / "pipeline.py", workspace=ws, params={"c": 2.0}, runner=InProcessRunner()
    )
    models.register(second.id, "readings", workspace=ws)
    diff = models.diff("readings@1", "readings@2", workspace=ws)
    assert diff.params["c"] == ("0.25", "2.0")
    assert diff.datasets["readings"] == (first_dataset, new_dataset.version.ref)


def test_the_same_artifact_from_the_same_run_is_one_version(sqlite_workspace: Workspace) -> None:
    from sklearn.linear_model import LogisticRegression

    ws = sqlite_workspace
    x = np.random.default_rng(0).normal(size=(30, 2))
    with start_run("train", workspace=ws) as run:
        models.log_model(
            run, LogisticRegression().fit(x, x[:, 0] > 0), "model", input_example=x[:2]
        )
    first = models.register(run.id, "churn", workspace=ws)
    assert models.register(run.id, "churn", workspace=ws).version == first.version
    assert [v.version for v in ws.store.models.versions("churn")] == [1]


def test_an_ambiguous_lineage_name_lists_the_typed_choices(sqlite_workspace: Workspace) -> None:
    from sklearn.linear_model import LogisticRegression

    ws = sqlite_workspace
    dataset = _dataset(ws, "cancer")
    x = np.random.default_rng(0).normal(size=(30, 2))
    with start_run("train", workspace=ws) as run:
        run.use_dataset(dataset)
        models.log_model(
            run, LogisticRegression().fit(x, x[:, 0] > 0), "model", input_example=x[:2]
        )
    models.register(run.id, "cancer", workspace=ws)

    with pytest.raises(InvalidReference) as refused:
        build_lineage(ws, "cancer@1")
    message = str(refused.value)
    assert "dataset:cancer@1 (dataset version)" in message
    assert "model:cancer@1 (model version)" in message

    runner = CliRunner()
    result = runner.invoke(cli, ["-C", str(ws.root), "lineage", "cancer@1"])
    assert result.exit_code == 2
    assert "say which: dataset:cancer@1" in result.output
    as_model = runner.invoke(cli, ["-C", str(ws.root), "lineage", "model:cancer@1"])
    assert as_model.exit_code == 0, as_model.output
    assert as_model.output.splitlines()[0].startswith("model cancer@1 sklearn")
    as_data = runner.invoke(cli, ["-C", str(ws.root), "lineage", "dataset:cancer@1"])
    assert as_data.exit_code == 0, as_data.output
    assert "cancer@1" in as_data.output.splitlines()[0]
    assert not as_data.output.startswith("model ")
    assert "--help" not in result.output
    assert Path(ws.root).is_dir()
