"""Steps that read the outside world (``@step(reads=...)``) are cached on the state of what
they read: files, dataset versions, model aliases. A no-op re-run of the maintenance example
runs nothing, and one changed parameter re-runs only the steps below it."""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

from modelyard.errors import PipelineDefinitionError
from modelyard.pipeline.run import run_pipeline
from modelyard.pipeline.runners.local import InProcessRunner
from modelyard.workspace import Workspace

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "maintenance"

READER = """
from pathlib import Path
from modelyard.pipeline import Pipeline, datasets, files, models, step

@step(reads=files("{folder}/*.txt"))
def collect(folder: str = "inbox") -> list:
    return sorted(p.read_text() for p in (Path.cwd() / folder).glob("*.txt"))

@step
def count(collect: list) -> int:
    return len(collect)

@step(reads=datasets("{dataset_name}"))
def lookup(dataset_name: str = "ref") -> str:
    from modelyard.pipeline import current_run
    try:
        return current_run().resolve_dataset(dataset_name).ref
    except Exception:
        return "none"

@step(reads=models("churn@production"))
def champion() -> str:
    return "checked"

pipeline = Pipeline("reader", [collect, count, lookup, champion])
"""


def _statuses(run: object) -> dict[str, str]:
    return {s.step: s.status for s in run.steps}  # type: ignore[attr-defined]


@pytest.fixture
def reader(sqlite_workspace: Workspace, monkeypatch: pytest.MonkeyPatch) -> Path:
    ws = sqlite_workspace
    monkeypatch.chdir(ws.root)  # the in-process runner reads relative paths from here
    (ws.root / "inbox").mkdir()
    (ws.root / "inbox" / "a.txt").write_text("first")
    path = ws.root / "reader.py"
    path.write_text(textwrap.dedent(READER))
    return path


def _run(ws: Workspace, path: Path, **params: object) -> dict[str, str]:
    run = run_pipeline(path, workspace=ws, runner=InProcessRunner(), params=params)
    assert run.status == "finished", run.error
    return _statuses(run)


def test_a_step_reading_files_is_cached_on_their_content(
    sqlite_workspace: Workspace, reader: Path
) -> None:
    ws = sqlite_workspace
    assert set(_run(ws, reader).values()) == {"finished"}
    assert set(_run(ws, reader).values()) == {"cached"}
    # new content in a file it reads: collect runs; count's input changed too
    (ws.root / "inbox" / "a.txt").write_text("changed")
    assert _run(ws, reader) == {
        "collect": "finished",
        "count": "finished",  # its input changed
        "lookup": "cached",
        "champion": "cached",
    }
    # a new file matching the pattern
    (ws.root / "inbox" / "b.txt").write_text("second")
    assert _run(ws, reader)["count"] == "finished"
    # a file that does not match changes nothing
    (ws.root / "inbox" / "notes.md").write_text("not read")
    assert set(_run(ws, reader).values()) == {"cached"}
    # a file going away: back to a state seen before, whose outputs are cached
    (ws.root / "inbox" / "b.txt").unlink()
    assert _run(ws, reader)["collect"] == "cached"
    (ws.root / "inbox" / "a.txt").unlink()  # a state never seen: no file at all
    assert _run(ws, reader)["collect"] == "finished"
    # the parameter in the pattern: another folder is another state
    (ws.root / "other").mkdir()
    assert _run(ws, reader, folder="other")["collect"] == "finished"


def test_rewriting_a_file_with_the_same_signature_is_still_seen(
    sqlite_workspace: Workspace, reader: Path
) -> None:
    """The memo of file digests keys on size, times and inode: a rewrite of the same size
    within the same second must not be taken for the old content."""
    ws = sqlite_workspace
    target = ws.root / "inbox" / "a.txt"
    old = os.stat(target)
    _run(ws, reader)
    target.write_text("FIRST")  # same size
    os.utime(target, ns=(old.st_atime_ns, old.st_mtime_ns))  # same modification time
    assert _run(ws, reader)["collect"] == "finished"


def test_a_step_reading_a_dataset_or_a_model_alias_follows_it(
    sqlite_workspace: Workspace, reader: Path, tmp_path: Path
) -> None:
    import modelyard.data

    ws = sqlite_workspace
    _run(ws, reader)
    assert set(_run(ws, reader).values()) == {"cached"}
    data = tmp_path / "ref.csv"
    data.write_text("a,b\n1,2\n")
    modelyard.data.add(data, name="ref", workspace=ws)
    assert _run(ws, reader)["lookup"] == "finished"  # the first version appeared
    assert _run(ws, reader)["lookup"] == "cached"
    data.write_text("a,b\n1,3\n")
    modelyard.data.add(data, name="ref", workspace=ws)
    assert _run(ws, reader)["lookup"] == "finished"  # a new latest version
    # the model alias: absent, then set, then moved
    run = ws.store.runs.create("r" * 32, name="train")
    for n, digest in enumerate(("sha256:" + "a" * 64, "sha256:" + "b" * 64), start=1):
        ws.store.models.add_version(
            "churn", digest=digest, flavor="sklearn", signature=None,
            requirements={}, run_id=run.id, source=None,
        )  # fmt: skip
        ws.store.models.move_alias("churn", "production", n, actor=None, reason=None)
        assert _run(ws, reader)["champion"] == "finished"
        assert _run(ws, reader)["champion"] == "cached"


def test_reads_naming_an_unknown_parameter_is_a_definition_error(
    sqlite_workspace: Workspace,
) -> None:
    path = sqlite_workspace.root / "bad.py"
    path.write_text(
        textwrap.dedent(
            """
            from modelyard.pipeline import Pipeline, files, step

            @step(reads=files("{inbox}/*.csv"))
            def collect(folder: str = "in") -> int:
                return 1

            pipeline = Pipeline("bad", [collect])
            """
        )
    )
    with pytest.raises(PipelineDefinitionError, match=r"bad.py:\d+: step 'collect' reads"):
        run_pipeline(path, workspace=sqlite_workspace)


@pytest.mark.slow
def test_maintenance_noop_rerun_runs_nothing_and_one_parameter_reruns_its_dependants(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The maintenance example, as the README's no-op benchmark runs it: nothing changed,
    nothing runs (collect reads the batch folder, register and featurize are cached, predict
    follows the production alias); ``n_estimators`` re-runs train and what depends on it."""
    from modelyard import models

    monkeypatch.syspath_prepend(str(EXAMPLE))
    from generate import generate

    root = tmp_path / "ws"
    root.mkdir()
    shutil.copy(EXAMPLE / "pipeline.py", root / "pipeline.py")
    (root / "data" / "incoming").mkdir(parents=True)
    generate(600, seed=1).to_csv(root / "data" / "incoming" / "batch-001.csv", index=False)
    ws, _ = Workspace.init(root, environ={})
    monkeypatch.chdir(root)
    params = {"n_estimators": 10, "min_roc_auc": 0.0}  # a quick model; the gate is not tested
    first = run_pipeline(root / "pipeline.py", workspace=ws, params=params)
    assert first.status == "finished", first.error
    v1 = models.register(first.step("register").run_id or "", "maintenance", workspace=ws)
    models.promote(v1.ref, "production", workspace=ws)

    again = run_pipeline(root / "pipeline.py", workspace=ws, params=params)
    statuses = _statuses(again)
    assert statuses.pop("predict") == "finished"  # the production alias appeared
    assert set(statuses.values()) == {"cached"}
    noop = run_pipeline(root / "pipeline.py", workspace=ws, params=params)
    assert set(_statuses(noop).values()) == {"cached"}
    # registering the identical artifact again is the same version, not a new one
    same = models.register(noop.step("register").run_id or "", "maintenance", workspace=ws)
    assert same.ref == v1.ref
    assert [v.version for v in ws.store.models.versions("maintenance")] == [1]

    changed = run_pipeline(
        root / "pipeline.py", workspace=ws, params={**params, "n_estimators": 11}
    )
    assert _statuses(changed) == {
        "collect": "cached",
        "validate": "cached",
        "prepare": "cached",
        "train": "finished",
        "evaluate": "finished",
        "register": "finished",
        "featurize": "cached",
        "predict": "cached",  # scores with the production model, which did not change
    }
    ws.close()
    sys.modules.pop("generate", None)
