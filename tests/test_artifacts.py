"""The content-addressed artifact store: atomic, deduplicated, verified."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from modelyard.artifacts import LocalArtifactStore, Manifest
from modelyard.errors import ArtifactError, CorruptArtifact, NotFound
from modelyard.hashing import digest_bytes

HELLO = b"hello modelyard\n"


@pytest.fixture
def store(tmp_path: Path) -> LocalArtifactStore:
    return LocalArtifactStore(tmp_path / "artifacts")


def test_blob_is_stored_under_its_digest_with_fanout(store: LocalArtifactStore) -> None:
    digest = store.put_bytes(HELLO)
    assert digest == digest_bytes(HELLO)
    hexd = digest.removeprefix("sha256:")
    assert store.path(digest) == store.root / "sha256" / hexd[:2] / hexd[2:]
    assert store.get_bytes(digest) == HELLO


def test_identical_content_is_stored_once(store: LocalArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_bytes(HELLO)
    assert store.put_file(src) == store.put_bytes(HELLO)
    blobs = [p for p in (store.root / "sha256").rglob("*") if p.is_file()]
    assert len(blobs) == 1
    assert list((store.root / "tmp").iterdir()) == []


def test_put_file_reports_progress_in_chunks(store: LocalArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "big.bin"
    src.write_bytes(os.urandom(3 * (1 << 20) + 5))
    seen: list[int] = []
    store.put_file(src, progress=seen.append)
    assert sum(seen) == src.stat().st_size
    assert len(seen) == 4


def test_corrupted_blob_is_never_returned(store: LocalArtifactStore, tmp_path: Path) -> None:
    digest = store.put_bytes(HELLO)
    path = store.path(digest)
    path.chmod(0o644)
    path.write_bytes(b"HELLO modelyard\n")
    with pytest.raises(CorruptArtifact, match=digest):
        store.get_bytes(digest)
    with pytest.raises(CorruptArtifact, match=digest):
        store.open(digest)
    dest = tmp_path / "out.txt"
    with pytest.raises(CorruptArtifact):
        store.export_file(digest, dest)
    assert not dest.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".out")] == []


def test_interrupted_write_leaves_no_blob(
    store: LocalArtifactStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src = tmp_path / "a.bin"
    src.write_bytes(b"x" * 100)

    def crash(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError, match="disk full"):
        store.put_file(src)
    assert not (store.root / "sha256").exists()
    assert list((store.root / "tmp").iterdir()) == []


def test_unknown_and_malformed_digests(store: LocalArtifactStore) -> None:
    with pytest.raises(NotFound, match="not in the artifact store"):
        store.get_bytes("sha256:" + "0" * 64)
    with pytest.raises(ArtifactError, match="not a sha256 digest"):
        store.get_bytes("sha256:../../etc/passwd")


def test_folder_round_trip_keeps_paths_sizes_and_modes(
    store: LocalArtifactStore, tmp_path: Path
) -> None:
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.csv").write_text("x\n1\n")
    (src / "sub" / "run.sh").write_text("#!/bin/sh\n")
    (src / "sub" / "run.sh").chmod(0o755)
    digest, manifest = store.put_dir(src)
    assert [(e.path, e.size, e.mode) for e in manifest.entries] == [
        ("a.csv", 4, 0o644),
        ("sub/run.sh", 10, 0o755),
    ]
    assert store.read_manifest(digest) == Manifest(
        tuple(sorted(manifest.entries, key=lambda e: e.path))
    )
    out = tmp_path / "out"
    store.export_dir(digest, out)
    assert (out / "a.csv").read_text() == "x\n1\n"
    assert (out / "sub" / "run.sh").stat().st_mode & 0o777 == 0o755
    # same content, same digest
    assert store.put_dir(out)[0] == digest


def test_manifest_with_escaping_path_is_rejected(store: LocalArtifactStore, tmp_path: Path) -> None:
    bad = (
        b'{"files":[{"digest":"' + store.put_bytes(b"x").encode() + b'","mode":420,'
        b'"path":"../escape","size":1}],"mediaType":"application/vnd.modelyard.manifest.v1+json"}'
    )
    digest = store.put_bytes(bad)
    with pytest.raises(ArtifactError, match="unsafe path"):
        store.export_dir(digest, tmp_path / "out")
    assert not (tmp_path / "escape").exists()


def test_symlinks_are_refused(store: LocalArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "link").symlink_to("/etc/hostname")
    with pytest.raises(ArtifactError, match="symbolic links"):
        store.put_dir(src)


def test_read_only_store_refuses_writes(tmp_path: Path) -> None:
    store = LocalArtifactStore(tmp_path, read_only=True)
    with pytest.raises(ArtifactError, match="read-only"):
        store.put_bytes(b"x")
