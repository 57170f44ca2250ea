"""Pipeline definitions, parameters, serializers and cache keys: no store, no processes."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from modelyard.artifacts import LocalArtifactStore
from modelyard.errors import InvalidParameter, PipelineDefinitionError, StepFailed
from modelyard.pipeline import Pipeline, dataset, step
from modelyard.pipeline.cache import code_digest
from modelyard.pipeline.graph import build_graph
from modelyard.pipeline.loader import load_pipeline
from modelyard.pipeline.params import parse_assignments, resolve_params
from modelyard.pipeline.serializers import dump, load
from modelyard.workspace import Workspace


def _write(folder: Path, name: str, source: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(source))
    return path


@step
def raw(rows: int = 3) -> list[int]:
    return list(range(rows))


@step(outputs=("low", "high"))
def split(raw: list[int], cut: float = 1.5) -> tuple[list[int], list[int]]:
    return [r for r in raw if r < cut], [r for r in raw if r >= cut]


@step
def count(low: list[int], high: list[int], ref=dataset("sensors@2")) -> int:  # noqa: B008 - the marker is the point
    return len(low) + len(high)


def test_a_step_is_a_plain_function() -> None:
    assert split([0, 1, 2, 3], cut=2) == ([0, 1], [2, 3])
    assert raw() == [0, 1, 2]


def test_graph_wires_by_name_and_orders_topologically() -> None:
    graph = build_graph(Pipeline("demo", [count, split, raw]))
    assert graph.order == ("raw", "split", "count")
    assert dict(graph.nodes["count"].inputs) == {"low": "split", "high": "split"}
    assert dict(graph.nodes["count"].datasets) == {"ref": "sensors@2"}
    assert {n: (p.type, p.default) for n, p in graph.params.items()} == {
        "rows": (int, 3),
        "cut": (float, 1.5),
    }
    assert graph.downstream("raw") == {"split", "count"}


def test_a_cycle_is_reported_with_file_and_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "cyclic.py",
        """
        from modelyard.pipeline import Pipeline, step

        @step
        def a(b: int) -> int:
            return b

        @step
        def b(a: int) -> int:
            return a

        pipeline = Pipeline("cyclic", [a, b])
        """,
    )
    with pytest.raises(PipelineDefinitionError, match=r"cyclic\.py:\d+: the steps form a cycle"):
        build_graph(load_pipeline(path))


def test_a_missing_input_names_the_step_the_input_and_the_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "missing.py",
        """
        from modelyard.pipeline import Pipeline, step

        @step
        def first() -> int:
            return 1

        @step
        def second(frist: int) -> int:
            return frist

        pipeline = Pipeline("missing", [first, second])
        """,
    )
    with pytest.raises(PipelineDefinitionError) as info:
        build_graph(load_pipeline(path))
    assert "missing.py:8: input 'frist' of step 'second' is not an output" in str(info.value)
    assert "(outputs: first, second)" in str(info.value)


def test_an_undecorated_function_is_refused() -> None:
    def loose() -> int:
        return 1

    with pytest.raises(PipelineDefinitionError, match="'loose' in pipeline 'p' is not a step"):
        build_graph(Pipeline("p", [loose]))


def test_parameters_are_typed_and_checked() -> None:
    graph = build_graph(Pipeline("demo", [raw, split, count]))
    assert resolve_params(graph, parse_assignments(["rows=10", "cut=2"])) == {
        "rows": 10,
        "cut": 2.0,
    }
    with pytest.raises(InvalidParameter, match="parameter 'rows' expects int, got 'ten'"):
        resolve_params(graph, {"rows": "ten"})
    with pytest.raises(
        InvalidParameter, match=r"unknown parameter 'row' .*\(parameters: cut, rows\)"
    ):
        resolve_params(graph, {"row": "1"})
    with pytest.raises(InvalidParameter, match="NAME=VALUE"):
        parse_assignments(["rows"])


def _roundtrip(value: object, store: LocalArtifactStore, tmp: Path, **kw: bool) -> object:
    stored = dump(
        value, step="s", output="o", artifacts=store, allow_pickle=kw.get("pickle", False)
    )
    return stored.serializer, load(
        stored, artifacts=store, scratch=tmp / "scratch", resolve_dataset=lambda r: r
    )


def test_serializers_pick_a_safe_format_by_type(tmp_path: Path) -> None:
    from sklearn.ensemble import RandomForestClassifier

    store = LocalArtifactStore(tmp_path / "artifacts")
    frame = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    kind, back = _roundtrip(frame, store, tmp_path)
    assert kind == "parquet"
    pd.testing.assert_frame_equal(back, frame)
    kind, back = _roundtrip(np.arange(6).reshape(2, 3), store, tmp_path)
    assert kind == "npy"
    assert back.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert _roundtrip({"k": [1, 2.5, None]}, store, tmp_path) == ("json", {"k": [1, 2.5, None]})
    model = RandomForestClassifier(n_estimators=2, random_state=0).fit([[0], [1]], [0, 1])
    kind, back = _roundtrip(model, store, tmp_path)
    assert kind == "skops"
    assert back.predict([[1]]).tolist() == [1]
    src = tmp_path / "report.txt"
    src.write_text("hello")
    kind, back = _roundtrip(src, store, tmp_path)
    assert kind == "file"
    assert Path(back).read_text() == "hello"


class Opaque:
    pass


def test_an_unserializable_output_names_step_output_and_type(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path / "artifacts")
    with pytest.raises(StepFailed) as info:
        dump(Opaque(), step="train", output="model", artifacts=store, allow_pickle=False)
    assert "step 'train' output 'model'" in str(info.value)
    assert "test_pipeline_core.Opaque" in str(info.value)
    assert "@step(pickle=True)" in str(info.value)
    with pytest.raises(StepFailed, match="output 'o'"):
        dump(np.array([object()]), step="s", output="o", artifacts=store, allow_pickle=False)
    kind, back = _roundtrip(Opaque(), store, tmp_path, pickle=True)
    assert kind == "pickle"
    assert isinstance(back, Opaque)


def test_code_digest_follows_project_helpers_only(tmp_path: Path) -> None:
    helpers = tmp_path / "helpers_cd.py"
    helpers.write_text("def clean(x):\n    return x + 1\n")
    source = """
        from modelyard.pipeline import Pipeline, step
        from helpers_cd import clean

        @step
        def a(x: int = 1) -> int:
            return clean(x)

        @step
        def b(x: int = 1) -> int:
            return x

        pipeline = Pipeline("cd", [a, b])
        """
    path = _write(tmp_path, "cd.py", source)
    import sys

    def digests() -> tuple[str, str]:
        sys.modules.pop("helpers_cd", None)
        nodes = build_graph(load_pipeline(path)).nodes
        return code_digest(nodes["a"].spec.fn, tmp_path), code_digest(nodes["b"].spec.fn, tmp_path)

    a1, b1 = digests()
    assert digests() == (a1, b1)
    helpers.write_text("def clean(x):\n    return x + 2\n")
    a2, b2 = digests()
    assert a2 != a1
    assert b2 == b1


def test_code_digest_sees_list_and_dict_settings_and_steps_outside_the_root(
    tmp_path: Path,
) -> None:
    """Found in review: editing FEATURES = [...] or a step outside the workspace kept the cache."""
    template = """
        from modelyard.pipeline import Pipeline, step

        FEATURES = {features}
        CONFIG = {config}

        @step
        def a(x: int = 1) -> int:
            return len(FEATURES) + CONFIG["k"] + x

        pipeline = Pipeline("cs", [a])
        """
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    workspace_root = tmp_path / "ws"
    workspace_root.mkdir()

    def digest(features: str, config: str, body: str = "") -> str:
        text = template.format(features=features, config=config)
        if body:
            text = text.replace("+ x", body)
        path = _write(elsewhere, "cs.py", text)
        fn = build_graph(load_pipeline(path)).nodes["a"].spec.fn
        return code_digest(fn, workspace_root)

    base = digest('["a", "b"]', '{"k": 1}')
    assert digest('["a", "b"]', '{"k": 1}') == base
    assert digest('["a", "b", "c"]', '{"k": 1}') != base
    assert digest('["a", "b"]', '{"k": 2}') != base
    assert digest('["a", "b"]', '{"k": 1}', body="- x") != base


def test_step_estimators_load_after_a_model_was_served_in_the_same_process(
    tmp_path: Path,
) -> None:
    """Found in review: loading a model emptied skops' default allow-list, and step values that
    relied on it then failed. Both now use modelyard's one allow-list."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression

    from modelyard.flavors import load_model, save_model

    x = np.random.default_rng(0).normal(size=(20, 2))
    model = LogisticRegression().fit(x, x[:, 0] > 0)
    save_model(model, tmp_path / "m", input_example=x[:2])
    load_model(tmp_path / "m")
    store = LocalArtifactStore(tmp_path / "artifacts")
    kind, back = _roundtrip(model, store, tmp_path)
    assert kind == "skops"
    assert isinstance(back, LogisticRegression)
    assert (back.coef_ == model.coef_).all()


def test_worker_refuses_a_pickle_the_producing_step_did_not_declare(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    """The serializer name comes with the task (on Argo, from workflow parameters): a value
    marked 'pickle' is unpickled only when the pipeline's own code declared it."""
    import pickle

    from modelyard.pipeline.worker import execute_task

    source = """
        from modelyard.pipeline import Pipeline, step

        @step(outputs="x")
        def a() -> int:
            return 1

        @step
        def b(x: int) -> int:
            return x

        pipeline = Pipeline("pk", [a, b])
        """
    path = _write(tmp_path, "pk.py", source)
    ws = sqlite_workspace
    digest = ws.artifacts.put_bytes(pickle.dumps(41))
    result = execute_task(
        {
            "workspace_root": str(ws.root),
            "store_url": ws.settings.store_url,
            "artifact_root": str(ws.settings.artifact_root),
            "pipeline_file": str(path),
            "pipeline": "pk",
            "step": "b",
            "params": {},
            "inputs": {"x": {"digest": digest, "serializer": "pickle"}},
            "run_id": None,
            "scratch_dir": str(tmp_path / "scratch"),
        }
    )
    assert result["outputs"] == {}
    assert "did not declare @step(pickle=True)" in result["error"]["message"]


def test_in_process_steps_leave_the_environment_as_they_found_it(
    sqlite_workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """CI found this: the in-process runner left MODELYARD_WORKSPACE pointing at a pipeline's
    workspace, and later commands in the same process used the wrong one."""
    import os

    from modelyard.pipeline.worker import execute_task

    monkeypatch.delenv("MODELYARD_WORKSPACE", raising=False)
    monkeypatch.setenv("MODELYARD_STORE_URL", "sqlite:///before.db")
    path = _write(
        tmp_path, "env.py", "from modelyard.pipeline import Pipeline, step\n\n"
        "@step\ndef a() -> int:\n    return 1\n\npipeline = Pipeline('env', [a])\n",
    )  # fmt: skip
    ws = sqlite_workspace
    execute_task(
        {
            "workspace_root": str(ws.root),
            "store_url": ws.settings.store_url,
            "artifact_root": str(ws.settings.artifact_root),
            "pipeline_file": str(path),
            "step": "a",
            "params": {},
            "inputs": {},
            "run_id": None,
            "scratch_dir": str(tmp_path / "scratch"),
        }
    )
    assert "MODELYARD_WORKSPACE" not in os.environ
    assert os.environ["MODELYARD_STORE_URL"] == "sqlite:///before.db"
