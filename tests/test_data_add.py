"""Dataset snapshots through the Python API: versions, profiles, folders, bad input."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest

import modelyard.data as data
from modelyard.errors import (
    CorruptArtifact,
    DataError,
    InvalidName,
    InvalidReference,
    NotFound,
)
from modelyard.workspace import Workspace

pytestmark = pytest.mark.remote  # the same tests against a team server too

CSV = (
    "id,amount,city,flag\n"
    "1,10.0,Paris,true\n"
    "2,,Berlin,false\n"
    "3,30.0,Paris,\n"
    "4,40.0,,true\n"
    "5,20.0,Paris,false\n"
)


def _col(profile: dict, name: str) -> dict:
    return next(c for c in profile["columns"] if c["name"] == name)


def test_public_api_is_exported() -> None:
    names = {n for n in dir(data) if not n.startswith("_")}
    assert set(data.__all__) <= names
    for fn in ("add", "list", "versions", "show", "resolve", "diff", "checkout", "read_frame"):
        assert fn in data.__all__


def test_add_dedupes_and_numbers_versions(workspace: Workspace, tmp_path: Path) -> None:
    src = tmp_path / "t.csv"
    src.write_text(CSV)
    first = data.add(src, name="churn", description="first cut", workspace=workspace)
    again = data.add(src, name="churn", workspace=workspace)
    src.write_text(CSV + "6,60.0,Rome,true\n")
    second = data.add(src, name="churn", workspace=workspace)

    assert (first.created, first.version.version) == (True, 1)
    assert (again.created, again.version.version, again.version.id) == (False, 1, first.version.id)
    assert (second.created, second.version.version) == (True, 2)
    v = first.version
    assert (v.kind, v.format, v.size, v.file_count) == ("file", "csv", len(CSV), 1)
    assert v.description == "first cut"
    assert workspace.artifacts.get_bytes(v.digest) == CSV.encode()
    assert [x.version for x in data.versions("churn", workspace=workspace)] == [1, 2]
    assert data.show("churn", workspace=workspace).version == 2
    assert data.resolve("churn@latest", workspace=workspace).version == 2
    assert data.show(f"churn@{v.digest}", workspace=workspace).version == 1
    assert [(d.name, d.latest_version) for d in data.list(workspace=workspace)] == [("churn", 2)]


def test_profile_of_a_known_csv(workspace: Workspace, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    src = tmp_path / "t.csv"
    src.write_text(CSV)
    v = data.add(src, name="t", workspace=workspace).version
    p = v.profile
    assert p is not None
    assert v.schema is not None
    assert p["profile_version"] == 1
    assert (p["row_count"], p["column_count"], p["sample_rows"], p["sample_exact"]) == (
        5,
        4,
        5,
        True,
    )
    assert [(c["name"], c["type"]) for c in v.schema["columns"]] == [
        ("id", "int64"),
        ("amount", "double"),
        ("city", "string"),
        ("flag", "bool"),
    ]
    amount = _col(p, "amount")
    assert (amount["count"], amount["missing"], amount["missing_share"]) == (4, 1, 0.2)
    assert (amount["min"], amount["max"], amount["mean"]) == (10.0, 40.0, 25.0)
    assert amount["std"] == pytest.approx((500 / 3) ** 0.5)
    assert amount["quantiles"]["values"][10] == 25.0  # the median, exact on a small table
    assert sum(amount["histogram"]["counts"]) == 4
    assert len(amount["histogram"]["edges"]) == 21
    ident = _col(p, "id")
    assert (ident["min"], ident["max"], ident["mean"], ident["logical_type"]) == (
        1,
        5,
        3.0,
        "integer",
    )
    city = _col(p, "city")
    assert city["missing_share"] == 0.2
    assert city["distinct"] == 2
    assert city["distinct_exact"]
    assert city["top"] == [{"value": "Paris", "count": 3}, {"value": "Berlin", "count": 1}]
    flag = _col(p, "flag")
    assert flag["true_share"] == 0.5
    assert flag["missing"] == 1
    sample = pq.read_table(io.BytesIO(workspace.artifacts.get_bytes(p["sample_digest"])))
    assert sample.column("id").to_pylist() == [1, 2, 3, 4, 5]


def test_sample_is_bounded_seeded_and_stats_exact(workspace: Workspace, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    n = 25_000
    src = tmp_path / "big.csv"
    src.write_text("x,k\n" + "".join(f"{i},{'ab'[i % 2]}\n" for i in range(n)))
    p = data.add(src, name="big", workspace=workspace).version.profile
    assert p is not None
    x = _col(p, "x")
    assert (p["row_count"], p["sample_rows"], p["sample_exact"]) == (n, 10_000, False)
    assert (x["min"], x["max"], x["mean"]) == (0, n - 1, (n - 1) / 2)
    assert _col(p, "k")["top"] == [{"value": "a", "count": n // 2}, {"value": "b", "count": n // 2}]
    sample = pq.read_table(io.BytesIO(workspace.artifacts.get_bytes(p["sample_digest"])))
    xs = sample.column("x").to_pylist()
    assert len(set(xs)) == 10_000
    assert xs == sorted(xs)
    # same data, same seed: the same sample under another name
    again = data.add(src, name="big2", workspace=workspace).version.profile
    assert again is not None
    assert again["sample_digest"] == p["sample_digest"]


def test_csv_type_inference_miss_is_widened(
    workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.data import formats

    monkeypatch.setattr(formats, "_CSV_BLOCK_SIZE", 64)  # first block sees only integers
    src = tmp_path / "w.csv"
    src.write_text("a,b\n" + "".join(f"{i},{i}\n" for i in range(40)) + "1.5,x\n")
    v = data.add(src, name="w", workspace=workspace).version
    assert v.schema is not None
    assert [c["type"] for c in v.schema["columns"]] == ["double", "string"]
    assert v.profile is not None
    assert v.profile["row_count"] == 41
    assert _col(v.profile, "a")["max"] == 39.0
    frame = data.read_frame("w", workspace=workspace)
    assert list(frame["b"])[-1] == "x"
    assert frame["a"].dtype == "float64"


def test_parquet_file(workspace: Workspace, tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "score": pa.array([0.5, 1.5, None, float("nan"), 2.5]),
            "label": pa.array(["x", "y", "x", None, "x"]).dictionary_encode(),
        }
    )
    src = tmp_path / "d.parquet"
    pq.write_table(table, src)
    v = data.add(src, name="pq", workspace=workspace).version
    assert v.format == "parquet"
    assert v.profile is not None
    score = _col(v.profile, "score")
    assert (score["count"], score["missing"], score["mean"]) == (3, 2, 1.5)
    label = _col(v.profile, "label")
    assert label["logical_type"] == "string"
    assert label["top"] == [{"value": "x", "count": 3}, {"value": "y", "count": 1}]
    frame = data.read_frame("pq@1", workspace=workspace)
    assert frame.shape == (5, 2)


def test_folder_snapshot_with_shared_schema(workspace: Workspace, tmp_path: Path) -> None:
    folder = tmp_path / "parts"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.csv").write_text("x,y\n1,a\n2,b\n")
    (folder / "sub" / "b.csv").write_text("x,y\n3.5,a\n")
    (folder / "README.txt").write_text("notes\n")
    v = data.add(folder, name="parts", workspace=workspace).version
    assert (v.kind, v.format, v.file_count) == ("directory", "directory", 3)
    manifest = workspace.artifacts.read_manifest(v.digest)
    assert [e.path for e in manifest.entries] == ["README.txt", "a.csv", "sub/b.csv"]
    assert v.size == manifest.size
    assert v.profile is not None
    assert v.schema is not None
    assert v.profile["mode"] == "table"
    assert v.profile["files"] == ["a.csv", "sub/b.csv"]
    assert v.profile["row_count"] == 3
    assert _col(v.profile, "x")["mean"] == pytest.approx(6.5 / 3)
    assert v.schema["columns"][0]["type"] == "double"
    assert list(data.read_frame("parts", workspace=workspace)["x"]) == [1.0, 2.0, 3.5]


def test_folder_with_different_schemas_profiles_each_file(
    workspace: Workspace, tmp_path: Path
) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "a.csv").write_text("x\n1\n")
    (folder / "b.csv").write_text("name,age\nann,3\nbob,4\n")
    v = data.add(folder, name="mixed", workspace=workspace).version
    assert v.profile is not None
    assert v.profile["mode"] == "per_file"
    assert v.profile["files"]["b.csv"]["row_count"] == 2
    assert _col(v.profile["files"]["a.csv"], "x")["mean"] == 1.0
    with pytest.raises(DataError, match="not one table"):
        data.read_frame("mixed", workspace=workspace)


def test_binary_file_has_no_profile(workspace: Workspace, tmp_path: Path) -> None:
    src = tmp_path / "weights.bin"
    src.write_bytes(os.urandom(1000))
    v = data.add(src, name="blob", workspace=workspace).version
    assert (v.format, v.schema, v.profile) == ("binary", None, None)


def test_diff_reports_files_schema_and_shifts(workspace: Workspace, tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "t.csv").write_text("v,c\n1,a\n2,a\n3,b\n")
    (folder / "old.txt").write_text("x")
    data.add(folder, name="f", workspace=workspace)
    (folder / "t.csv").write_text("v,c,new\n11,a,1\n12,z,1\n13,z,\n")
    (folder / "old.txt").unlink()
    (folder / "added.txt").write_text("y")
    data.add(folder, name="f", workspace=workspace)
    d = data.diff("f@1", "f@2", workspace=workspace)
    assert (d.files_added, d.files_removed, d.files_changed) == (
        ("added.txt",),
        ("old.txt",),
        ("t.csv",),
    )
    assert d.columns_added == ("new",)
    assert d.columns_removed == ()
    assert (d.row_count_a, d.row_count_b) == (3, 3)
    shift = {s.column: s for s in d.shifts}
    assert shift["v"].mean_shift_std == pytest.approx(10.0)  # mean 2 -> 12, std 1
    assert shift["c"].new_categories == ("z",)
    assert shift["c"].vanished_categories == ("b",)
    assert not d.identical
    assert data.diff("f@1", "f@1", workspace=workspace).identical


def test_diff_detects_type_change_across_datasets(workspace: Workspace, tmp_path: Path) -> None:
    (tmp_path / "a.csv").write_text("v\n1\n")
    (tmp_path / "b.csv").write_text("v\nhello\n")
    data.add(tmp_path / "a.csv", name="a", workspace=workspace)
    data.add(tmp_path / "b.csv", name="b", workspace=workspace)
    d = data.diff("a@1", "b", workspace=workspace)
    assert [(t.column, t.old, t.new) for t in d.type_changes] == [("v", "int64", "string")]
    assert (d.files_added, d.files_removed) == (("b.csv",), ("a.csv",))


def test_checkout_round_trip_is_byte_identical(workspace: Workspace, tmp_path: Path) -> None:
    folder = tmp_path / "src"
    (folder / "deep").mkdir(parents=True)
    (folder / "deep" / "x.bin").write_bytes(os.urandom(5000))
    (folder / "a.csv").write_text(CSV)
    data.add(folder, name="d", workspace=workspace)
    out = data.checkout("d@1", tmp_path / "out", workspace=workspace)
    for rel in ("deep/x.bin", "a.csv"):
        assert (out / rel).read_bytes() == (folder / rel).read_bytes()

    single = tmp_path / "one.csv"
    single.write_text(CSV)
    data.add(single, name="one", workspace=workspace)
    assert data.checkout("one", workspace=workspace) == Path.cwd() / "one.csv"
    assert (Path.cwd() / "one.csv").read_text() == CSV


def test_checkout_refuses_non_empty_destination(workspace: Workspace, tmp_path: Path) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "a.txt").write_text("new")
    data.add(folder, name="d", workspace=workspace)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "a.txt").write_text("old")
    (dest / "keep.txt").write_text("mine")
    from modelyard.errors import AlreadyExists

    with pytest.raises(AlreadyExists, match="not empty"):
        data.checkout("d", dest, workspace=workspace)
    assert (dest / "a.txt").read_text() == "old"
    data.checkout("d", dest, force=True, workspace=workspace)
    assert (dest / "a.txt").read_text() == "new"
    assert (dest / "keep.txt").read_text() == "mine"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".dest")] == []


def test_forced_checkout_with_a_conflict_changes_nothing(
    workspace: Workspace, tmp_path: Path
) -> None:
    """Found in review: a conflict found half-way left the folder half old, half new."""
    from modelyard.errors import AlreadyExists

    folder = tmp_path / "src"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("new")
    (folder / "sub" / "b.txt").write_text("new")
    data.add(folder, name="c", workspace=workspace)
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "a.txt").write_text("old")
    (dest / "sub").write_text("a file where the version has a folder")
    with pytest.raises(AlreadyExists, match="is a file; the version has a folder there"):
        data.checkout("c", dest, force=True, workspace=workspace)
    assert (dest / "a.txt").read_text() == "old"


def test_corrupted_blob_fails_checkout_and_leaves_dest_alone(
    workspace: Workspace, tmp_path: Path
) -> None:
    folder = tmp_path / "src"
    folder.mkdir()
    (folder / "a.txt").write_text("hello")
    v = data.add(folder, name="d", workspace=workspace).version
    entry = workspace.artifacts.read_manifest(v.digest).entries[0]
    blob = workspace.artifacts.path(entry.digest)
    blob.chmod(0o644)
    blob.write_text("HELLO")
    dest = tmp_path / "out"
    with pytest.raises(CorruptArtifact, match=entry.digest):
        data.checkout("d", dest, workspace=workspace)
    assert not dest.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


@pytest.mark.parametrize("name", ["../x", "a/b", "/abs/path", ""])
def test_unsafe_names_are_refused(workspace: Workspace, tmp_path: Path, name: str) -> None:
    src = tmp_path / "t.csv"
    src.write_text(CSV)
    with pytest.raises(InvalidName):
        data.add(src, name=name, workspace=workspace)
    assert data.list(workspace=workspace) == []


def test_unknown_dataset_version_and_alias(workspace: Workspace, tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no dataset named 'nope'"):
        data.show("nope", workspace=workspace)
    (tmp_path / "t.csv").write_text(CSV)
    data.add(tmp_path / "t.csv", name="t", workspace=workspace)
    with pytest.raises(NotFound, match=r"has no version 9 \(latest is t@1\)"):
        data.show("t@9", workspace=workspace)
    with pytest.raises(InvalidReference, match="datasets have no aliases"):
        data.show("t@production", workspace=workspace)
    with pytest.raises(InvalidReference):
        data.show("../t@1", workspace=workspace)


def test_bad_paths_record_nothing(workspace: Workspace, tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file or folder"):
        data.add(tmp_path / "missing.csv", name="x", workspace=workspace)
    empty = tmp_path / "empty.csv"
    empty.touch()
    with pytest.raises(DataError, match="empty.csv: the file is empty"):
        data.add(empty, name="x", workspace=workspace)
    bad = tmp_path / "bad.csv"
    bad.write_text("a,b\n1,2\n3,4,5\n")
    with pytest.raises(DataError, match=r"bad\.csv: cannot read as CSV: .*Expected 2 columns"):
        data.add(bad, name="x", workspace=workspace)
    fake = tmp_path / "fake.parquet"
    fake.write_text("not parquet at all")
    with pytest.raises(DataError, match=r"fake\.parquet: cannot read as Parquet"):
        data.add(fake, name="x", workspace=workspace)
    folder = tmp_path / "linked"
    folder.mkdir()
    (folder / "real.txt").write_text("x")
    (folder / "link.txt").symlink_to(folder / "real.txt")
    with pytest.raises(DataError, match="symbolic links are not snapshotted"):
        data.add(folder, name="x", workspace=workspace)
    (tmp_path / "hollow").mkdir()
    with pytest.raises(DataError, match="holds no files"):
        data.add(tmp_path / "hollow", name="x", workspace=workspace)
    assert data.list(workspace=workspace) == []


def test_default_workspace_is_found_from_cwd(workspace: Workspace, tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(CSV)
    result = data.add(tmp_path / "t.csv", name="cwd")
    assert data.show("cwd").id == result.version.id


def test_header_only_csv_is_a_zero_row_version(workspace: Workspace, tmp_path: Path) -> None:
    src = tmp_path / "h.csv"
    src.write_text("a,b\n")
    v = data.add(src, name="h", workspace=workspace).version
    assert v.profile is not None
    assert (v.profile["row_count"], v.profile["column_count"]) == (0, 2)
    assert [c["missing_share"] for c in v.profile["columns"]] == [0.0, 0.0]


def test_duplicate_column_names_are_a_clear_error(workspace: Workspace, tmp_path: Path) -> None:
    csv = tmp_path / "dup.csv"
    csv.write_text("a,a\n1,2\n")
    with pytest.raises(DataError, match="column 'a' appears more than once"):
        data.add(csv, name="dup", workspace=workspace)
    with pytest.raises(NotFound):
        workspace.store.datasets.get("dup")


@pytest.mark.local_only
def test_link_shares_the_files_blocks_and_the_store_still_checks_them(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    """``link=True``: no copy (a reflink, or a hard link where the filesystem has no reflinks);
    the blob still holds exactly the bytes hashed, and a later in-place edit of the file is
    caught by the store's verification instead of being served."""
    ws = sqlite_workspace
    src = tmp_path / "linked.csv"
    src.write_text(CSV)
    version = data.add(src, name="linked", link=True, workspace=ws).version
    blob = ws.artifacts.local_path(version.digest)  # type: ignore[attr-defined]
    assert blob.read_bytes() == CSV.encode()
    assert version.profile is not None
    assert version.profile["row_count"] == 5
    if os.stat(blob).st_ino == os.stat(src).st_ino:  # a hard link: the same file
        with src.open("r+") as f:
            f.write("X")
        with pytest.raises(CorruptArtifact):
            ws.artifacts.get_bytes(version.digest)


def test_the_profile_taken_while_storing_is_the_stored_bytes_profile(
    sqlite_workspace: Workspace, tmp_path: Path
) -> None:
    """Storing and profiling read the file side by side; the profile must be the one the
    stored blob gives (the source is profiled, so it must be these very bytes)."""
    from modelyard.data.formats import TableSource
    from modelyard.data.profile import profile_tables

    ws = sqlite_workspace
    src = tmp_path / "big.csv"
    rows = "".join(f"{i},{i * 0.5},{'abc'[i % 3]},{i % 2 == 0}\n" for i in range(200_000))
    src.write_text("id,amount,city,flag\n" + rows)
    version = data.add(src, name="big", workspace=ws).version
    blob = ws.artifacts.local_path(version.digest)  # type: ignore[attr-defined]
    assert blob.read_bytes() == src.read_bytes()  # copy_file_range copied it all
    columns, profile = profile_tables([TableSource(blob, str(src), "csv")], None, ws.artifacts)
    assert version.profile == profile
    assert version.schema is not None
    assert version.schema["columns"] == columns


@pytest.mark.local_only
def test_a_linked_add_profiles_the_file_once(
    sqlite_workspace: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Found by the benchmark: the hard link changed the file's change time, the add took it
    for a modified file and profiled it a second time from the store."""
    import importlib

    add_module = importlib.import_module("modelyard.data.add")  # the package exports add()
    calls = []
    real = add_module._profile

    def counting(*args: object, **kwargs: object) -> object:
        calls.append(1)
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(add_module, "_profile", counting)
    src = tmp_path / "once.csv"
    src.write_text(CSV)
    data.add(src, name="once", link=True, workspace=sqlite_workspace)
    assert len(calls) == 1
