"""A virtual environment for an image, made on the host from wheels (no pip, no container).

Installing a wheel is unpacking it (the wheel spec): files under ``NAME.data/purelib`` and
``platlib`` and the rest go to ``site-packages``, ``scripts`` to ``bin`` with their ``#!python``
line pointing at the image's interpreter, ``data`` to the environment's root; headers are
dropped. The environment itself is what ``python -m venv --without-pip`` would write:
``pyvenv.cfg`` and ``bin/python*`` links to the base image's interpreter.

Then what a server never runs is left out (:func:`trim`): test suites, C/Cython sources and
headers, type stubs, byte-code caches shipped in wheels, the parts of pyarrow modelyard never
loads; shared objects lose the symbols no loader needs (:func:`strip_shared_objects`). Byte
code is compiled once here (:func:`compile_bytecode`) with hash-based, unchecked ``.pyc``
files and the image's paths, so the same wheels give the same bytes, and a read-only container
imports without compiling.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from modelyard.errors import ImageBuildFailed

# Folders no server imports: test suites (``tests`` only: ``numpy.testing`` and friends are
# imported at run time), byte-code caches made elsewhere.
TRIM_DIRS = frozenset({"tests", "__pycache__"})
# Sources, headers and stubs: for compilers and type checkers, never for the interpreter.
TRIM_SUFFIXES = (".pyx", ".pxd", ".pxi", ".c", ".cc", ".cpp", ".h", ".hpp", ".pyi", ".pyc")
# Wheel metadata files nothing reads at run time (RECORD lists files trimmed away).
TRIM_DIST_INFO = frozenset({"RECORD", "INSTALLER", "REQUESTED", "direct_url.json"})
# Parts of packages modelyard's runtime never loads. pyarrow: Arrow Flight (RPC) and the
# cloud and Hadoop file systems (``pyarrow.fs`` imports each inside ``try``, so the rest of
# ``pyarrow.fs`` still works), ORC files. The prediction log (IPC) and batch scoring (Parquet)
# use none of them.
TRIM_PACKAGE_FILES: dict[str, tuple[str, ...]] = {
    "pyarrow": (
        "*flight*",
        "libarrow_s3.*",
        "_s3fs.*",
        "_gcsfs.*",
        "_azurefs.*",
        "_hdfs.*",
        "_orc.*",
        "include",
        "src",
    ),
}


@dataclass(frozen=True)
class VenvLayout:
    """Where things go, inside the image, for an environment at ``prefix``."""

    prefix: str  # /opt/modelyard/venv
    python_minor: str  # "3.11"

    @property
    def site_packages(self) -> str:
        return f"{self.prefix}/lib/python{self.python_minor}/site-packages"

    @property
    def interpreter(self) -> str:
        return f"{self.prefix}/bin/python"


def write_skeleton(root: Path, layout: VenvLayout, base_python: str) -> None:
    """``pyvenv.cfg``, ``bin/python*`` links to ``base_python`` and an empty site-packages,
    under host folder ``root`` (which stands for ``layout.prefix``)."""
    home = str(PurePosixPath(base_python).parent)
    (root / "bin").mkdir(parents=True, exist_ok=True)
    (root / _rel(layout, layout.site_packages)).mkdir(parents=True, exist_ok=True)
    (root / "pyvenv.cfg").write_text(
        f"home = {home}\ninclude-system-site-packages = false\nversion = {layout.python_minor}\n"
    )
    minor = f"python{layout.python_minor}"
    for name, target in ((minor, base_python), ("python3", minor), ("python", minor)):
        link = root / "bin" / name
        if not link.is_symlink():
            link.symlink_to(target)
    lib64 = root / "lib64"
    if not lib64.is_symlink():
        lib64.symlink_to("lib")


def _rel(layout: VenvLayout, image_path: str) -> str:
    return str(PurePosixPath(image_path).relative_to(layout.prefix))


def install_wheel(wheel: Path, root: Path, layout: VenvLayout) -> None:
    """Unpack ``wheel`` into the environment at host folder ``root``."""
    site = root / _rel(layout, layout.site_packages)
    with zipfile.ZipFile(wheel) as zf:
        data_dir = next(
            (n.split("/")[0] for n in zf.namelist() if n.split("/")[0].endswith(".data")), None
        )
        for info in zf.infolist():
            if info.is_dir():
                continue
            name = info.filename
            parts = PurePosixPath(name).parts
            if ".." in parts or name.startswith("/"):
                raise ImageBuildFailed(f"wheel {wheel.name} holds an unsafe path {name!r}")
            if data_dir is not None and parts[0] == data_dir:
                if len(parts) < 3:
                    continue
                kind, rest = parts[1], PurePosixPath(*parts[2:])
                if kind in ("purelib", "platlib"):
                    target = site / rest
                elif kind == "scripts":
                    target = root / "bin" / rest
                elif kind == "data":
                    target = root / rest
                else:  # headers: for compilers only
                    continue
            else:
                target = site / name
            executable = bool((info.external_attr >> 16) & 0o100)
            content = zf.read(info)
            if data_dir is not None and parts[0] == data_dir and parts[1] == "scripts":
                content = _rewrite_shebang(content, layout.interpreter)
                executable = True
            target.parent.mkdir(parents=True, exist_ok=True)
            if target.is_symlink() or target.exists():
                target.unlink()
            target.write_bytes(content)
            target.chmod(0o755 if executable else 0o644)


def _rewrite_shebang(content: bytes, interpreter: str) -> bytes:
    if content.startswith(b"#!python"):
        first, _, rest = content.partition(b"\n")
        return b"#!" + interpreter.encode() + first[len(b"#!python") :] + b"\n" + rest
    return content


def trim(site_packages: Path) -> int:
    """Remove what a server never runs (see the module docstring); returns bytes removed."""
    removed = 0
    for package, patterns in TRIM_PACKAGE_FILES.items():
        for pattern in patterns:
            for path in sorted((site_packages / package).glob(pattern)):
                removed += _tree_size(path) if path.is_dir() else path.lstat().st_size
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
    for dirpath, dirnames, filenames in os.walk(site_packages, topdown=True):
        here = Path(dirpath)
        for name in list(dirnames):
            if name in TRIM_DIRS:
                removed += _tree_size(here / name)
                shutil.rmtree(here / name)
                dirnames.remove(name)
        in_dist_info = here.name.endswith(".dist-info")
        for name in filenames:
            path = here / name
            if name.endswith(TRIM_SUFFIXES) or (in_dist_info and name in TRIM_DIST_INFO):
                removed += path.lstat().st_size
                path.unlink()
    return removed


def _tree_size(path: Path) -> int:
    return sum(p.lstat().st_size for p in path.rglob("*") if not p.is_dir())


def compile_bytecode(host_dir: Path, image_dir: str, python_minor: str) -> bool:
    """Compile every ``.py`` under ``host_dir`` to unchecked hash-based ``.pyc`` files naming
    ``image_dir`` as their folder, when this interpreter is the image's minor version (byte code
    is specific to it); returns whether it did. Run in a child with a fixed hash seed: the
    order of a frozenset constant, marshalled into the file, follows string hashing."""
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if here != python_minor:
        return False
    code = (
        "import compileall, py_compile, sys\n"
        "ok = compileall.compile_dir(sys.argv[1], ddir=sys.argv[2], quiet=2, workers=1,\n"
        "    invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)\n"
        "sys.exit(0)\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "0", "SOURCE_DATE_EPOCH": "315532800"}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    proc = subprocess.run(
        [sys.executable, "-I", "-c", code, str(host_dir), image_dir],
        env=env,
        capture_output=True,
        timeout=1800,
        check=False,
    )
    if proc.returncode != 0:
        raise ImageBuildFailed(
            "compiling byte code failed: " + proc.stderr.decode(errors="replace")[-500:]
        )
    for pyc in host_dir.rglob("*.pyc"):
        pyc.chmod(0o644)
    return True


def strip_tool() -> str | None:
    """``strip`` and its version (``/usr/bin/strip GNU strip 2.40``), or None without one."""
    found = shutil.which("strip")
    if found is None:
        return None
    proc = subprocess.run([found, "--version"], capture_output=True, text=True, check=False)
    return f"{found} {proc.stdout.splitlines()[0] if proc.stdout else ''}".strip()


def strip_shared_objects(site_packages: Path) -> int:
    """``strip --strip-unneeded`` every shared object except those auditwheel vendored into
    ``<package>.libs`` (patchelf moved their headers; stripped, the loader refuses them as
    "not page-aligned"). Symbols a loader needs stay; returns bytes saved."""
    tool = shutil.which("strip")
    if tool is None:
        return 0
    targets = sorted(
        p
        for p in site_packages.rglob("*.so*")
        if p.is_file()
        and not p.is_symlink()
        and not any(part.endswith(".libs") for part in p.relative_to(site_packages).parts)
    )
    before = sum(p.stat().st_size for p in targets)
    for start in range(0, len(targets), 200):
        batch = targets[start : start + 200]
        proc = subprocess.run(
            [tool, "--strip-unneeded", *map(str, batch)], capture_output=True, check=False
        )
        if proc.returncode != 0:
            raise ImageBuildFailed(
                "strip failed: " + proc.stderr.decode(errors="replace").strip()[-300:]
            )
    return before - sum(p.stat().st_size for p in targets)


def make_tree_readable(root: Path) -> None:
    """Folders 0755, files 0644 or 0755 (owner-executable): what the image's user may read."""
    for path in [root, *root.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            path.chmod(0o755)
        else:
            path.chmod(0o755 if mode & 0o100 else 0o644)


def build_venv(
    wheels: Iterable[Path],
    root: Path,
    layout: VenvLayout,
    base_python: str,
    *,
    bytecode: bool = True,
) -> None:
    """The whole environment at host folder ``root``: skeleton, wheels, trim, byte code."""
    write_skeleton(root, layout, base_python)
    install_packages(wheels, root, layout, bytecode=bytecode)


def install_packages(
    wheels: Iterable[Path], root: Path, layout: VenvLayout, *, bytecode: bool = True
) -> None:
    """Unpack ``wheels`` into host folder ``root`` (the environment at ``layout.prefix``, with
    or without its skeleton), trim, strip and compile them, and make everything readable."""
    for wheel in wheels:
        install_wheel(wheel, root, layout)
    site = root / _rel(layout, layout.site_packages)
    if site.is_dir():
        trim(site)
        strip_shared_objects(site)
        if bytecode:
            compile_bytecode(site, layout.site_packages, layout.python_minor)
    make_tree_readable(root)
