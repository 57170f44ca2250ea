"""``modelyard gc``: referenced blobs (and what their manifests name) survive, old orphans go,
fresh ones stay, a dry run only counts, and a malformed CSV leaves no orphan behind."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from modelyard import data
from modelyard.cli.main import cli
from modelyard.errors import DataError, InvalidParameter, UsageError
from modelyard.garbage import DEFAULT_GRACE_S, GCResult, collect_garbage
from modelyard.units import format_size
from modelyard.workspace import Workspace

sys.path.insert(0, str(Path(__file__).parent))

CSV = "id,amount,city\n1,10.0,Paris\n2,20.5,Lyon\n3,7.25,Nice\n"
HOUR = 3600.0


def _blobs(ws: Workspace) -> dict[str, Path]:
    root = ws.artifacts.root / "sha256"
    return {f"sha256:{p.parent.name}{p.name}": p for p in root.glob("*/*") if p.is_file()}


def _age(paths: list[Path] | dict[str, Path], seconds: float) -> None:
    """Make blobs look stored ``seconds`` ago."""
    then = time.time() - seconds
    for path in paths.values() if isinstance(paths, dict) else paths:
        os.utime(path, (then, then))


def _orphan(ws: Workspace, content: bytes, age: float) -> Path:
    path = ws.artifacts.path(ws.artifacts.put_bytes(content))
    _age([path], age)
    return path


def _fill(ws: Workspace, tmp_path: Path) -> dict[str, str]:
    """A dataset file and folder, a run with a file, a folder and a model, a registered model
    version: every kind of record that points at blobs."""
    from sklearn.linear_model import LogisticRegression

    from modelyard import models
    from modelyard.tracking import start_run

    (tmp_path / "sales.csv").write_text(CSV)
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("only in a folder\n")
    (folder / "sub" / "b.csv").write_text(CSV.replace("Paris", "Rome"))
    table = data.add(tmp_path / "sales.csv", name="sales", workspace=ws).version
    tree = data.add(folder, name="images", workspace=ws).version
    (tmp_path / "notes.txt").write_text("a run artifact\n")
    (tmp_path / "outdir").mkdir()
    (tmp_path / "outdir" / "weights.bin").write_bytes(b"\x00\x01" * 50)
    x = np.random.default_rng(0).normal(size=(40, 3))
    with start_run("train", workspace=ws) as run:
        run.log_artifact(tmp_path / "notes.txt")
        run.log_artifact(tmp_path / "outdir")
        run.log_model(LogisticRegression().fit(x, x[:, 0] > 0), "model", input_example=x[:3])
    version = models.register(run.id, "churn", workspace=ws)
    assert table.profile is not None
    return {
        "table": table.digest,
        "sample": table.profile["sample_digest"],  # named only inside a profile (JSON)
        "tree": tree.digest,
        "model": version.digest,
    }


def test_gc_keeps_what_is_referenced_and_removes_old_orphans(
    workspace: Workspace, tmp_path: Path
) -> None:
    ws = workspace
    digests = _fill(ws, tmp_path)
    referenced = _blobs(ws)
    _age(referenced, 2 * HOUR)  # only the references can keep these now
    # The blobs a folder holds are named only by its manifest, and are kept through it.
    tree_entries = ws.artifacts.read_manifest(digests["tree"]).entries
    assert {e.digest for e in tree_entries} <= set(referenced)
    old = [_orphan(ws, b"old orphan %d\n" % i, 2 * HOUR) for i in range(3)]
    # An orphaned manifest: it goes, and what it alone names goes with it.
    stray = ws.artifacts.put_bytes(b"only a stray manifest names me\n")
    stray_manifest, _ = ws.artifacts.put_dir(_folder(tmp_path / "stray", "x.txt", b"stray\n"))
    old += [ws.artifacts.path(stray)]
    old += [ws.artifacts.path(e.digest) for e in ws.artifacts.read_manifest(stray_manifest).entries]
    old += [ws.artifacts.path(stray_manifest)]
    _age(old, 2 * HOUR)
    fresh = _orphan(ws, b"fresh orphan\n", 60)
    old_bytes = sum(p.stat().st_size for p in set(old))
    kept_bytes = sum(p.stat().st_size for p in referenced.values())
    expected = GCResult(
        dry_run=True,
        grace_s=DEFAULT_GRACE_S,
        kept=len(referenced),
        kept_bytes=kept_bytes,
        recent=1,
        recent_bytes=fresh.stat().st_size,
        removed=len(set(old)),
        removed_bytes=old_bytes,
    )

    assert collect_garbage(ws, dry_run=True) == expected
    assert all(p.exists() for p in old)  # a dry run removes nothing

    result = collect_garbage(ws)
    assert result == GCResult(**{**expected.__dict__, "dry_run": False})
    assert not any(p.exists() for p in old)
    assert fresh.exists()
    assert set(_blobs(ws)) == set(referenced) | {f"sha256:{fresh.parent.name}{fresh.name}"}
    assert list((ws.artifacts.root / "tmp").glob("gc-*")) == []

    # Everything the records point at still reads back whole.
    assert data.checkout("sales@1", tmp_path / "co.csv", workspace=ws)
    assert (tmp_path / "co.csv").read_text() == CSV
    ws.artifacts.export_dir(digests["tree"], tmp_path / "tree-co")
    assert (tmp_path / "tree-co" / "a.txt").read_text() == "only in a folder\n"
    ws.artifacts.export_dir(digests["model"], tmp_path / "model-co")
    assert ws.artifacts.get_bytes(digests["sample"])

    # Nothing left to collect; with no grace the fresh orphan goes too.
    assert collect_garbage(ws).removed == 0
    again = collect_garbage(ws, grace_s=0)
    assert (again.removed, again.recent) == (1, 0)
    assert not fresh.exists()


def _folder(path: Path, name: str, content: bytes) -> Path:
    path.mkdir()
    (path / name).write_bytes(content)
    return path


def test_storing_an_orphan_again_restarts_its_grace_period(
    workspace: Workspace, tmp_path: Path
) -> None:
    """A writer storing bytes that an old orphan already holds (about to record them): the
    deduplicated store refreshes the blob, so gc does not take it from under the writer."""
    ws = workspace
    path = _orphan(ws, b"about to be recorded\n", 2 * HOUR)
    (tmp_path / "same.txt").write_bytes(b"about to be recorded\n")
    ws.artifacts.put_file(tmp_path / "same.txt")
    result = collect_garbage(ws)
    assert (result.removed, result.recent) == (0, 1)
    assert path.exists()
    _age([path], 2 * HOUR)
    ws.artifacts.put_bytes(b"about to be recorded\n")
    assert collect_garbage(ws).removed == 0


def test_gc_cli_reports_counts_and_sizes(workspace: Workspace, tmp_path: Path) -> None:
    ws = workspace
    (tmp_path / "sales.csv").write_text(CSV)
    data.add(tmp_path / "sales.csv", name="sales", workspace=ws)
    referenced = _blobs(ws)
    size = sum(p.stat().st_size for p in referenced.values())
    kept = f"{len(referenced)} blobs ({format_size(size)})"
    old = _orphan(ws, b"x" * 1500, 3 * HOUR)
    fresh = _orphan(ws, b"fresh\n", 0)
    runner = CliRunner()

    result = runner.invoke(cli, ["gc", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"referenced:   {kept}, kept\n"
        "recent:       1 blob (6 B), kept (unreferenced, younger than 1h)\n"
        "would remove: 1 blob (1.5 kB) (dry run: nothing removed)\n"
    )
    assert old.exists()

    result = runner.invoke(cli, ["gc", "--grace", "2h"])
    assert result.exit_code == 0, result.output
    assert result.output == (
        f"referenced:   {kept}, kept\n"
        "recent:       1 blob (6 B), kept (unreferenced, younger than 2h)\n"
        "removed:      1 blob (1.5 kB) freed\n"
    )
    assert not old.exists()
    assert fresh.exists()

    result = runner.invoke(cli, ["gc", "--grace", "soon"])
    assert result.exit_code == 2
    assert "'soon' is not a duration like 3600, 30m, 1h or 2d" in result.output
    with pytest.raises(InvalidParameter, match="cannot be negative"):
        collect_garbage(ws, grace_s=-1)


def test_a_malformed_csv_leaves_no_orphan(workspace: Workspace, tmp_path: Path) -> None:
    ws = workspace
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3,4,5\n")
    with pytest.raises(DataError, match="Expected 2 columns"):
        data.add(bad, name="x", workspace=ws)
    assert _blobs(ws) == {}

    # A folder with one malformed CSV: its good files and its manifest go too.
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.csv").write_text(CSV)
    (folder / "readme.txt").write_text("hello\n")
    (folder / "bad.csv").write_text("a,b\n1,2\n3,4,5\n")
    with pytest.raises(DataError, match="Expected 2 columns"):
        data.add(folder, name="x", workspace=ws)
    assert _blobs(ws) == {}
    fake = tmp_path / "fake.parquet"
    fake.write_text("not parquet at all")
    with pytest.raises(DataError, match="cannot read as Parquet"):
        data.add(fake, name="x", workspace=ws)
    assert _blobs(ws) == {}


def test_a_malformed_csv_keeps_bytes_something_else_refers_to(
    workspace: Workspace, tmp_path: Path
) -> None:
    from modelyard.tracking import start_run

    ws = workspace
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3,4,5\n")
    with start_run("keep", workspace=ws) as run:
        logged = run.log_artifact(bad)  # the same bytes, recorded as a run artifact
    (tmp_path / "mixed").mkdir()
    (tmp_path / "mixed" / "bad.csv").write_text("a,b\n1,2\n3,4,5\n")
    (tmp_path / "mixed" / "new.txt").write_text("new\n")
    with pytest.raises(DataError):
        data.add(bad, name="x", workspace=ws)
    with pytest.raises(DataError):
        data.add(tmp_path / "mixed", name="x", workspace=ws)
    blobs = _blobs(ws)
    assert ws.artifacts.path(logged) in blobs.values()
    assert collect_garbage(ws, grace_s=0).removed == 0  # what is left is all referenced


def test_gc_refuses_a_client_of_a_team_server(tmp_path: Path) -> None:
    (tmp_path / "modelyard.toml").write_text("")
    ws = Workspace.at(tmp_path, {"MODELYARD_URL": "http://127.0.0.1:9", "MODELYARD_TOKEN": "t"})
    with pytest.raises(UsageError, match=r"client of the team server http://127\.0\.0\.1:9"):
        collect_garbage(ws)
    result = CliRunner().invoke(
        cli, ["-C", str(tmp_path), "gc"], env={"MODELYARD_URL": "http://127.0.0.1:9"}
    )
    assert result.exit_code == 2
    assert "run 'modelyard gc' there" in result.output


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_writer_racing_the_removal_keeps_its_blob(
    sqlite_workspace: Workspace, monkeypatch: pytest.MonkeyPatch, when: str
) -> None:
    """gc has seen an old orphan; a writer stores the same bytes just before gc moves it aside
    (the second look sees it refreshed and puts it back) or just after (the writer finds it
    gone and writes it again). Either way the blob is there for the writer's record."""
    from modelyard.artifacts import gc as gc_module

    ws = sqlite_workspace
    content = b"racing\n"
    path = _orphan(ws, content, 2 * HOUR)
    real_rename = os.rename

    def racing_rename(src: str | Path, dst: str | Path) -> None:
        if when == "before":
            ws.artifacts.put_bytes(content)
        real_rename(src, dst)
        if when == "after":
            ws.artifacts.put_bytes(content)

    monkeypatch.setattr(gc_module.os, "rename", racing_rename)
    result = collect_garbage(ws)
    assert (result.removed, result.recent) == ((0, 1) if when == "before" else (1, 0))
    assert path.read_bytes() == content
    assert list((ws.artifacts.root / "tmp").glob("gc-*")) == []


def test_blobs_a_dead_collector_left_aside_are_judged_again(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    import subprocess

    ws = sqlite_workspace
    (tmp_path / "sales.csv").write_text(CSV)
    recorded = ws.artifacts.path(data.add(tmp_path / "sales.csv", name="s", workspace=ws)
                                 .version.digest)  # fmt: skip
    orphan = _orphan(ws, b"old orphan\n", 2 * HOUR)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    aside = ws.artifacts.root / "tmp"
    for blob in (recorded, orphan):  # a collector died between moving these and deciding
        blob.rename(aside / f"gc-{blob.parent.name}{blob.name}-{dead.pid}")
    result = collect_garbage(ws)
    assert recorded.read_text() == CSV
    assert not orphan.exists()
    assert result.removed == 1
    assert list(aside.glob("gc-*")) == []
