"""`modelyard data …` end to end through click: output and exit codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from modelyard.cli.main import cli
from modelyard.workspace import Workspace

pytestmark = pytest.mark.remote  # the same tests against a team server too

CSV = "id,amount,city\n1,10.0,Paris\n2,,Berlin\n3,30.0,Paris\n4,40.0,Paris\n5,20.0,Rome\n"


def run(*args: str) -> Result:
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": "200"})


def test_add_list_versions_show(workspace: Workspace, tmp_path: Path) -> None:
    src = tmp_path / "churn.csv"
    src.write_text(CSV)
    first = run("data", "add", str(src), "--name", "churn", "-d", "initial")
    assert first.exit_code == 0, first.output
    assert re.fullmatch(
        rf"Added churn@1 \(sha256:[0-9a-f]{{12}}, {len(CSV)} B, 1 file, csv, "
        r"5 rows x 3 columns\)\n",
        first.stdout,
    )
    again = run("data", "add", str(src), "--name", "churn")
    assert again.exit_code == 0
    assert again.stdout.startswith("Unchanged: churn@1 already holds this content")
    src.write_text(CSV + "6,60.0,Oslo\n")
    assert run("data", "add", str(src), "--name", "churn").stdout.startswith("Added churn@2")

    listing = run("data", "list")
    assert listing.exit_code == 0
    size = len(CSV) + len("6,60.0,Oslo\n")
    assert re.search(rf"churn\s+│\s+2\s+│\s+csv\s+│\s+{size} B\s+│\s+6", listing.stdout)

    versions = run("data", "versions", "churn")
    assert versions.exit_code == 0
    assert re.search(r"1\s+│\s+sha256:\w{12}\s+│\s+csv.*│\s+5\s+│.*initial", versions.stdout)

    show = run("data", "show", "churn@1")
    assert show.exit_code == 0, show.output
    assert "churn@1" in show.stdout
    assert "5 rows x 3 columns" in show.stdout
    assert re.search(r"amount\s+│\s+double\s+│\s+20\.0%\s+│\s+10\s+│\s+25\s+│", show.stdout)
    assert "3: Paris (3), Berlin (1), Rome (1)" in show.stdout


def test_show_json_and_unknowns(workspace: Workspace, tmp_path: Path) -> None:
    import json

    (tmp_path / "t.csv").write_text(CSV)
    run("data", "add", str(tmp_path / "t.csv"), "--name", "t")
    doc = json.loads(run("data", "show", "t", "--json").stdout)
    assert doc["profile"]["row_count"] == 5
    assert doc["profile"]["profile_version"] == 1

    unknown = run("data", "show", "nope")
    assert unknown.exit_code == 1
    assert unknown.stderr == "error: no dataset named 'nope'\n"
    missing_version = run("data", "show", "t@7")
    assert (missing_version.exit_code, missing_version.stderr) == (
        1,
        "error: dataset 't' has no version 7 (latest is t@1)\n",
    )
    alias = run("data", "checkout", "t@prod")
    assert alias.exit_code == 2
    assert "datasets have no aliases" in alias.stderr


@pytest.mark.parametrize("name", ["../x", "a/b", "/etc/passwd"])
def test_unsafe_name_is_a_usage_error(workspace: Workspace, tmp_path: Path, name: str) -> None:
    (tmp_path / "t.csv").write_text(CSV)
    result = run("data", "add", str(tmp_path / "t.csv"), "--name", name)
    assert result.exit_code == 2
    assert result.stderr.startswith(f"error: dataset name {name!r}")
    assert run("data", "list").stdout.startswith("No datasets yet")


def test_bad_files_exit_1_with_the_problem(workspace: Workspace, tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3,4,5\n")
    result = run("data", "add", str(bad), "--name", "x")
    assert result.exit_code == 1
    assert result.stderr == (
        f"error: {bad}: cannot read as CSV: "
        "CSV parse error: Row #3: Expected 2 columns, got 3: 3,4,5\n"
    )
    missing = run("data", "add", str(tmp_path / "nope.csv"), "--name", "x")
    assert (missing.exit_code, missing.stderr) == (
        1,
        f"error: {tmp_path / 'nope.csv'}: no such file or folder\n",
    )
    assert run("data", "versions", "x").exit_code == 1


def test_diff_output(workspace: Workspace, tmp_path: Path) -> None:
    src = tmp_path / "t.csv"
    src.write_text("v,c\n1,a\n2,a\n3,b\n")
    run("data", "add", str(src), "--name", "t")
    src.write_text("v,c,extra\n11,a,1\n12,z,\n13,z,\n")
    run("data", "add", str(src), "--name", "t")
    result = run("data", "diff", "t@1", "t@2")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"t@1 \(sha256:\w{12}\) -> t@2 \(sha256:\w{12}\)", lines[0])
    assert lines[1:] == [
        "  ~ t.csv  (changed)",
        "rows: 3 -> 3",
        "column added: extra",
        "v: mean 2 -> 12 (+10.00 std)",
        "c: new top categories: z; vanished: b",
    ]
    same = run("data", "diff", "t@1", "t@1")
    assert same.stdout.splitlines()[1] == "identical content"


def test_checkout(workspace: Workspace, tmp_path: Path) -> None:
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "a.csv").write_text(CSV)
    (folder / "b.bin").write_bytes(b"\x00\x01binary")
    run("data", "add", str(folder), "--name", "f")
    dest = tmp_path / "out"
    result = run("data", "checkout", "f@1", "-o", str(dest))
    assert result.exit_code == 0, result.output
    assert result.stdout == f"Checked out f@1 to {dest} (2 files, {len(CSV) + 8} B)\n"
    assert (dest / "sub" / "a.csv").read_text() == CSV
    assert (dest / "b.bin").read_bytes() == b"\x00\x01binary"
    refused = run("data", "checkout", "f", "-o", str(dest))
    assert refused.exit_code == 1
    assert "is not empty; pass --force" in refused.stderr
    assert run("data", "checkout", "f", "-o", str(dest), "--force").exit_code == 0


def test_corrupt_blob_on_checkout_names_the_digest(workspace: Workspace, tmp_path: Path) -> None:
    src = tmp_path / "t.csv"
    src.write_text(CSV)
    run("data", "add", str(src), "--name", "t")
    from modelyard.data import show

    digest = show("t", workspace=workspace).digest
    blob = workspace.artifacts.path(digest)
    blob.chmod(0o644)
    blob.write_text(CSV.replace("Paris", "Paros"))
    result = run("data", "checkout", "t", "-o", str(tmp_path / "out.csv"))
    assert result.exit_code == 1
    assert result.stderr.startswith(f"error: artifact {digest} is corrupted")
    assert not (tmp_path / "out.csv").exists()


def test_stored_text_is_printed_as_text_not_markup(workspace: Workspace, tmp_path: Path) -> None:
    """Found in review: a CSV cell '[/bold]' crashed `data show` with a MarkupError."""
    csv = tmp_path / "m.csv"
    csv.write_text("[b]col,x\n[/bold],1\n[red]hi,2\n")
    runner = CliRunner()
    assert runner.invoke(cli, ["data", "add", str(csv), "--name", "markup"]).exit_code == 0
    result = runner.invoke(cli, ["data", "show", "markup"])
    assert result.exit_code == 0, result.output
    assert "[b]col" in result.stdout
    assert "[/bold]" in result.stdout
