"""The artifact store in an S3 bucket, against a real S3 protocol server (moto_server): keys by
digest, verified writes and reads, multipart uploads, gc with the grace rules, a killed upload,
an unreachable bucket."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from conftest_remote import free_port
from conftest_s3 import AWS, empty_bucket, keys, s3_client, s3_env
from modelyard import data
from modelyard.artifacts.s3 import S3ArtifactStore, S3Location
from modelyard.cli.main import cli
from modelyard.errors import ArtifactUnavailable, ConfigError, CorruptArtifact, NotFound
from modelyard.garbage import collect_garbage
from modelyard.workspace import Workspace

MiB = 1 << 20
PREFIX = "team/artifacts"


def _key(digest: str) -> str:
    hexd = digest.removeprefix("sha256:")
    return f"{PREFIX}/sha256/{hexd[:2]}/{hexd[2:]}"


def _random_file(path: Path, size: int) -> Path:
    with path.open("wb") as out:
        for i in range(-(-size // MiB)):
            out.write(os.urandom(min(MiB, size - i * MiB)))
    return path


def _store(bucket: str, cache: Path, **kwargs: Any) -> S3ArtifactStore:
    return S3ArtifactStore(f"s3://{bucket}/{PREFIX}", cache, aws=AWS, **kwargs)


def test_blobs_live_under_their_digest_and_come_back_verified(
    s3: Any, bucket: str, tmp_path: Path
) -> None:
    store = _store(bucket, tmp_path / "a", part_size=5 * MiB)
    small = store.put_bytes(b"hello bucket")
    big_file = _random_file(tmp_path / "big.bin", 12 * MiB + 123)  # three parts of 5 MiB
    big = store.put_file(big_file)
    assert big == f"sha256:{hashlib.sha256(big_file.read_bytes()).hexdigest()}"
    assert keys(s3, bucket) == sorted([_key(small), _key(big)])
    assert s3.head_object(Bucket=bucket, Key=_key(big))["ContentLength"] == 12 * MiB + 123
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []

    fresh = _store(bucket, tmp_path / "b")  # an empty cache: everything comes from the bucket
    assert fresh.exists(big)
    assert fresh.size(big) == 12 * MiB + 123
    assert fresh.get_bytes(small) == b"hello bucket"
    fresh.export_file(big, tmp_path / "out" / "big.bin")
    assert (tmp_path / "out" / "big.bin").read_bytes() == big_file.read_bytes()
    assert not fresh.exists("sha256:" + "0" * 64)
    with pytest.raises(NotFound):
        fresh.get_bytes("sha256:" + "0" * 64)


def test_storing_again_renews_the_age_that_gc_reads(s3: Any, bucket: str, tmp_path: Path) -> None:
    store = _store(bucket, tmp_path / "a")
    digest = store.put_bytes(b"same content")
    first = s3.head_object(Bucket=bucket, Key=_key(digest))["LastModified"]
    deadline = time.monotonic() + 5
    while s3.head_object(Bucket=bucket, Key=_key(digest))["LastModified"] == first:
        assert time.monotonic() < deadline, "storing again never renewed LastModified"
        store.put_bytes(b"same content")  # LastModified has whole seconds
    assert keys(s3, bucket) == [_key(digest)]


def test_a_wrong_digest_on_read_is_refused(s3: Any, bucket: str, tmp_path: Path) -> None:
    store = _store(bucket, tmp_path / "a")
    digest = store.put_bytes(b"the real bytes")
    s3.put_object(Bucket=bucket, Key=_key(digest), Body=b"tampered bytes")
    reader = _store(bucket, tmp_path / "b")
    with pytest.raises(CorruptArtifact, match=digest):
        reader.get_bytes(digest)
    dest = tmp_path / "out.bin"
    dest.write_bytes(b"untouched")
    with pytest.raises(CorruptArtifact):
        reader.export_file(digest, dest)
    assert dest.read_bytes() == b"untouched"
    assert not reader.path(digest).exists(), "corrupt bytes must not reach the cache"
    assert list((tmp_path / "b" / "tmp").iterdir()) == []


def test_workspace_settings_pick_the_bucket(bucket: str, tmp_path: Path) -> None:
    root = tmp_path / "ws"
    root.mkdir()
    (root / "modelyard.toml").write_text(f'[artifacts]\nurl = "s3://{bucket}/from-file"\n')
    ws = Workspace.at(root, environ=AWS)
    assert isinstance(ws.artifacts, S3ArtifactStore)
    assert ws.artifacts.url == f"s3://{bucket}/from-file"
    assert ws.artifacts.root == root / ".modelyard" / "artifacts"  # the cache
    env = {**AWS, "MODELYARD_ARTIFACTS_URL": f"s3://{bucket}/from-env/"}
    assert Workspace.at(root, environ=env).artifacts.url == f"s3://{bucket}/from-env"
    for bad in ("gs://bucket/x", "s3:///x", "s3://bucket/a/../b"):
        with pytest.raises(ConfigError):
            S3Location.parse(bad)


def test_gc_in_a_bucket_keeps_what_is_referenced_and_what_is_recent(
    s3: Any, s3_workspace: Workspace, bucket: str, tmp_path: Path
) -> None:
    (tmp_path / "sales.csv").write_text("id,amount\n1,10.0\n2,20.5\n")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text("named only in a manifest\n")
    table = data.add(tmp_path / "sales.csv", name="sales", workspace=s3_workspace).version
    tree = data.add(folder, name="folder", workspace=s3_workspace).version
    orphan = s3_workspace.artifacts.put_bytes(b"nobody refers to me")
    referenced = set(keys(s3, bucket)) - {_key(orphan)}
    assert _key(table.digest) in referenced
    assert _key(tree.digest) in referenced

    recent = collect_garbage(s3_workspace)  # default grace: one hour
    assert (recent.removed, recent.recent) == (0, 1)
    dry = collect_garbage(s3_workspace, grace_s=0, dry_run=True)
    assert (dry.removed, dry.removed_bytes) == (1, len(b"nobody refers to me"))
    assert _key(orphan) in keys(s3, bucket)

    result = CliRunner().invoke(
        cli, ["-C", str(s3_workspace.root), "gc", "--grace", "0"], env=s3_env(bucket)
    )
    assert result.exit_code == 0, result.output
    assert "removed:      1 blob" in result.output
    assert set(keys(s3, bucket)) == referenced
    assert not s3_workspace.artifacts.path(orphan).exists(), "the cached copy goes too"
    assert data.read_frame("sales@1", workspace=s3_workspace).shape == (2, 2)


KILLED_UPLOADER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from modelyard.artifacts.s3 import S3ArtifactStore

    url, cache, blob, marker, endpoint = sys.argv[1:6]
    aws = {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "modelyard-test",
           "AWS_SECRET_ACCESS_KEY": "modelyard-test-secret", "AWS_REGION": "us-east-1"}
    store = S3ArtifactStore(url, Path(cache), aws=aws, part_size=5 << 20)
    send = store.s3.upload_part

    def stall_after_two(**kwargs):
        answer = send(**kwargs)
        if kwargs["PartNumber"] == 2:
            Path(marker).write_text("two parts sent")
            time.sleep(600)  # the test kills us here, mid-upload
        return answer

    store.s3.upload_part = stall_after_two
    store.put_file(Path(blob))
    """
)


def test_a_killed_multipart_upload_leaves_nothing_visible_and_gc_aborts_it(
    s3: Any, s3_workspace: Workspace, bucket: str, tmp_path: Path
) -> None:
    from conftest_s3 import S3_ENDPOINT

    blob = _random_file(tmp_path / "big.bin", 16 * MiB)
    marker = tmp_path / "marker"
    url = f"s3://{bucket}/{PREFIX}"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_UPLOADER, url, str(tmp_path / "c"), str(blob), str(marker)]
        + [S3_ENDPOINT]
    )
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, "the uploader exited before it was killed"
            assert time.monotonic() < deadline, "the uploader never sent two parts"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    digest = f"sha256:{hashlib.sha256(blob.read_bytes()).hexdigest()}"
    assert keys(s3, bucket) == [], "an incomplete multipart upload is not an object"
    assert not s3_workspace.artifacts.exists(digest)
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    assert [u["Key"] for u in uploads] == [_key(digest)]

    assert collect_garbage(s3_workspace, grace_s=0).parts_removed == 0  # a fresh upload stays
    dry = collect_garbage(s3_workspace, upload_grace_s=0, dry_run=True)
    assert (dry.parts_removed, dry.parts_removed_bytes) == (1, 10 * MiB)  # two parts were sent
    assert len(s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])) == 1
    result = CliRunner().invoke(
        cli,
        ["-C", str(s3_workspace.root), "gc", "--upload-grace", "0"],
        env=s3_env(bucket),
    )
    assert result.exit_code == 0, result.output
    assert "removed: 1 stale upload part(s) (10.5 MB)" in result.output
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []
    assert s3_workspace.artifacts.put_file(blob) == digest  # and the blob can be stored anew
    assert keys(s3, bucket) == [_key(digest)]


def test_an_unreachable_bucket_gives_one_clear_error_and_a_retry_works(tmp_path: Path) -> None:
    """Nothing listens on the endpoint at first: a one-line error naming the bucket and the
    endpoint (the CLI prints it and exits 1); with an S3 server started there, the same store
    object (and the same command) succeeds."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    aws = {**AWS, "AWS_ENDPOINT_URL": endpoint}
    store = S3ArtifactStore("s3://later/x", tmp_path / "c", aws=aws)
    started = time.monotonic()
    with pytest.raises(ArtifactUnavailable) as caught:
        store.put_bytes(b"waiting for the bucket")
    message = str(caught.value)
    assert "cannot reach s3://later/x" in message
    assert endpoint in message
    assert "\n" not in message
    assert time.monotonic() - started < 30

    ws, _ = Workspace.init(tmp_path / "ws", environ=s3_env("later", **aws))
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    runner = CliRunner()
    env = s3_env("later", **aws)
    failed = runner.invoke(
        cli, ["-C", str(ws.root), "data", "add", str(tmp_path / "t.csv"), "--name", "t"], env=env
    )
    assert failed.exit_code == 1
    assert f"cannot reach s3://later/team/artifacts at {endpoint}" in failed.output
    assert failed.output.count("\n") == 1
    assert "Traceback" not in failed.output

    moto = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        from conftest_s3 import reachable

        deadline = time.monotonic() + 60
        while not reachable(endpoint):
            assert moto.poll() is None, "moto_server exited"
            assert time.monotonic() < deadline, "moto_server did not start"
            time.sleep(0.1)
        client = s3_client(endpoint)
        client.create_bucket(Bucket="later")
        digest = store.put_bytes(b"waiting for the bucket")
        assert _store_keys(client) == [f"x/sha256/{digest[7:9]}/{digest[9:]}"]
        again = runner.invoke(
            cli,
            ["-C", str(ws.root), "data", "add", str(tmp_path / "t.csv"), "--name", "t"],
            env=env,
        )
        assert again.exit_code == 0, again.output
        empty_bucket(client, "later")
    finally:
        moto.terminate()
        moto.wait(timeout=30)
    ws.close()


def _store_keys(client: Any) -> list[str]:
    return keys(client, "later", "x/sha256/")
