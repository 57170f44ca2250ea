"""Reproducible OCI layers and environments, without any engine: same inputs, same bytes."""

from __future__ import annotations

import gzip
import io
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest

from modelyard.errors import InvalidReference
from modelyard.images.oci import (
    LAYER_MTIME,
    ImageLayout,
    dir_entry,
    file_entry,
    symlink_entry,
    tree_entries,
    write_layer,
)
from modelyard.images.registry import ImageRef
from modelyard.images.venv import VenvLayout, build_venv


def _layout(tmp_path: Path, name: str) -> ImageLayout:
    return ImageLayout(tmp_path / name).init()


def test_a_layer_is_the_same_bytes_whatever_the_order_time_and_owner(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "b").mkdir(parents=True)
    (src / "b" / "x.txt").write_text("x")
    (src / "a.sh").write_text("#!/bin/sh\n")
    (src / "a.sh").chmod(0o700)  # owner-only on the host: 0755 in the image
    os.utime(src / "b" / "x.txt", (1, 1))
    entries = [
        *tree_entries(src, "opt/app"),
        file_entry("etc/passwd", b"root:x:0:0::/:/bin/sh\n"),
        symlink_entry("opt/app/link", "a.sh"),
        dir_entry("home/u", uid=10001, gid=10001),
    ]
    one = write_layer(_layout(tmp_path, "one"), entries)
    os.utime(src / "b" / "x.txt", (999999, 999999))
    two = write_layer(_layout(tmp_path, "two"), list(reversed(entries)))
    assert one.digest == two.digest
    assert one.diff_id == two.diff_id

    blob = (tmp_path / "one" / "blobs" / "sha256" / one.digest.split(":")[1]).read_bytes()
    assert blob[:3] == b"\x1f\x8b\x08"
    assert blob[3] & 0x08 == 0  # no FNAME: the gzip header names no file
    assert blob[4:8] == b"\0\0\0\0"  # mtime 0
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob))) as tar:
        members = tar.getmembers()
    names = [m.name for m in members]
    assert names == sorted(names, key=lambda n: n.split("/"))
    assert {"etc", "home", "opt", "opt/app"} <= set(names)  # parents come first, owned by root
    for m in members:
        assert m.mtime == LAYER_MTIME
        assert (m.uname, m.gname) == ("", "")
        assert (m.uid, m.gid) == ((10001, 10001) if m.name == "home/u" else (0, 0))
    modes = {m.name: m.mode for m in members}
    assert modes["opt/app/a.sh"] == 0o755
    assert modes["opt/app/b/x.txt"] == 0o644


def _wheel(path: Path) -> Path:
    wheel = path / "demo-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("demo/__init__.py", "VALUE = {'a', 'b', 'c', 'd'}\n")
        zf.writestr("demo/tests/test_demo.py", "def test(): pass\n")
        zf.writestr("demo/_speed.pyx", "# cython source\n")
        zf.writestr("demo/_speed.pyi", "x: int\n")
        zf.writestr("demo-1.0.data/scripts/demo-cli", "#!python\nprint('hi')\n")
        zf.writestr("demo-1.0.dist-info/METADATA", "Name: demo\nVersion: 1.0\n")
        zf.writestr("demo-1.0.dist-info/RECORD", "")
    return wheel


def test_an_environment_is_trimmed_compiled_and_reproducible(tmp_path: Path) -> None:
    wheel = _wheel(tmp_path)
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    layout = VenvLayout("/opt/modelyard/venv", minor)
    digests = []
    for i, seed in enumerate(("1", "2")):
        root = tmp_path / f"venv{i}"
        os.environ["PYTHONHASHSEED"] = seed  # the child compiling byte code fixes its own
        try:
            build_venv([wheel], root, layout, f"/usr/bin/python{minor}")
        finally:
            os.environ.pop("PYTHONHASHSEED")
        digests.append(
            write_layer(_layout(tmp_path, f"l{i}"), tree_entries(root, "opt/modelyard/venv")).digest
        )
    assert digests[0] == digests[1]
    site = tmp_path / "venv0" / "lib" / f"python{minor}" / "site-packages"
    assert (site / "demo" / "__init__.py").is_file()
    assert not (site / "demo" / "tests").exists()
    assert not (site / "demo" / "_speed.pyx").exists()
    assert not (site / "demo" / "_speed.pyi").exists()
    assert not (site / "demo-1.0.dist-info" / "RECORD").exists()
    pyc = next((site / "demo" / "__pycache__").glob("__init__.*.pyc"))
    assert int.from_bytes(pyc.read_bytes()[4:8], "little") == 0b01  # hash-based, unchecked
    assert (
        (tmp_path / "venv0" / "bin" / "demo-cli")
        .read_text()
        .startswith("#!/opt/modelyard/venv/bin/python\n")
    )
    assert os.readlink(tmp_path / "venv0" / "bin" / f"python{minor}") == f"/usr/bin/python{minor}"
    cfg = (tmp_path / "venv0" / "pyvenv.cfg").read_text()
    assert "home = /usr/bin\n" in cfg
    # The byte code names the image's path, not the host folder it was compiled in.
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import marshal,sys; c=marshal.loads(open(sys.argv[1],'rb')"
            ".read()[16:]); print(c.co_filename)",
            str(pyc),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.strip() == f"{layout.site_packages}/demo/__init__.py"


def test_a_wheel_with_an_escaping_path_is_refused(tmp_path: Path) -> None:
    from modelyard.errors import ImageBuildFailed

    wheel = tmp_path / "evil-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("../../etc/evil", "x")
    with pytest.raises(ImageBuildFailed, match="unsafe path"):
        build_venv([wheel], tmp_path / "v", VenvLayout("/opt/v", "3.11"), "/usr/bin/python3.11")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:5000/team/churn:1", ("127.0.0.1:5000", "team/churn", "1", None)),
        (
            "registry.example.com/churn@sha256:" + "a" * 64,
            ("registry.example.com", "churn", None, "sha256:" + "a" * 64),
        ),
        ("localhost/x", ("localhost", "x", None, None)),
    ],
)
def test_image_refs_parse(text: str, expected: tuple[str, str, str | None, str | None]) -> None:
    ref = ImageRef.parse(text)
    assert (ref.host, ref.repository, ref.tag, ref.digest) == expected
    assert str(ref) == text


@pytest.mark.parametrize(
    "text",
    [
        "churn:1",
        "127.0.0.1:5000/Team/churn",
        "127.0.0.1:5000/x@sha256:zz",
        "127.0.0.1:5000/x:bad tag",
        "host:5000/../x",
    ],
)
def test_bad_image_refs_are_refused(text: str) -> None:
    with pytest.raises(InvalidReference):
        ImageRef.parse(text)


def test_without_bytecode_no_pyc_is_shipped(tmp_path: Path) -> None:
    minor = f"{sys.version_info.major}.{sys.version_info.minor}"
    root = tmp_path / "venv"
    build_venv([_wheel(tmp_path)], root, VenvLayout("/opt/v", minor), "/usr/bin/python3",
               bytecode=False)  # fmt: skip
    assert (root / "lib" / f"python{minor}" / "site-packages" / "demo" / "__init__.py").is_file()
    assert not list(root.rglob("*.pyc"))
