"""The wheelhouse: a folder of wheels prepared on the host, from which images install offline.

Containers here cannot reach the package index (nor can those at air-gapped sites), so every
package an image needs is fetched *on the host* — once, then cached — for the image's Python
and platform, and the build installs with ``pip --no-index``. The lock is exact
(``{name: version}``, transitive dependencies included): the image gets exactly what the run
had, and a package the wheelhouse lacks is an error that names it, before any build starts.
"""

from __future__ import annotations

import base64
import hashlib
import os
import platform
import re
import subprocess
import sys
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from modelyard.errors import WheelhouseError

# glibc of Debian bookworm; older manylinux tags are accepted by the same interpreter.
DEFAULT_MANYLINUX = ("manylinux_2_36", "manylinux_2_28", "manylinux2014", "manylinux2010")
_WHEEL_NAME = re.compile(
    r"^(?P<name>[^-]+)-(?P<version>[^-]+)(?:-\d[^-]*)?-[^-]+-[^-]+-[^-]+\.whl$"
)


def canonical_name(name: str) -> str:
    """PEP 503 name: case and runs of ``-_.`` do not count (``Scikit_Learn`` = ``scikit-learn``)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _canonical_version(version: str) -> str:
    # "6.0" and "6.0.0" are the same release
    from packaging.utils import canonicalize_version

    return canonicalize_version(version)


def parse_wheel_filename(filename: str) -> tuple[str, str] | None:
    """``(canonical name, version)`` of a wheel file name, or None if it is not one."""
    match = _WHEEL_NAME.match(filename)
    if match is None:
        return None
    return canonical_name(match["name"]), _canonical_version(match["version"])


def default_wheelhouse_dir(
    state_dir: Path | None = None, environ: Mapping[str, str] | None = None
) -> Path:
    """Where wheels are cached: ``<workspace>/.modelyard/wheelhouse`` when a workspace is
    given, else ``$MODELYARD_WHEELHOUSE`` or the user cache (``~/.cache/modelyard/wheelhouse``),
    so every project on the machine shares one download of numpy."""
    env = os.environ if environ is None else environ
    if state_dir is not None:
        return state_dir / "wheelhouse"
    if env.get("MODELYARD_WHEELHOUSE"):
        return Path(env["MODELYARD_WHEELHOUSE"])
    cache = Path(env.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "modelyard" / "wheelhouse"


@dataclass(frozen=True)
class Wheelhouse:
    """A folder of ``*.whl`` files (flat; sub-folders are other caches)."""

    path: Path

    def wheels(self) -> dict[tuple[str, str], Path]:
        found: dict[tuple[str, str], Path] = {}
        if self.path.is_dir():
            for wheel in sorted(self.path.glob("*.whl")):
                key = parse_wheel_filename(wheel.name)
                if key is not None:
                    found.setdefault(key, wheel)
        return found

    def find(self, name: str, version: str) -> Path | None:
        return self.wheels().get((canonical_name(name), _canonical_version(version)))

    def missing(self, lock: Mapping[str, str]) -> list[str]:
        have = self.wheels()
        return [
            f"{name}=={version}"
            for name, version in sorted(lock.items())
            if (canonical_name(name), _canonical_version(version)) not in have
        ]

    def require(self, lock: Mapping[str, str]) -> dict[str, Path]:
        """The wheel file of every locked package; :class:`WheelhouseError` naming each one the
        wheelhouse lacks (checked before a build, so nothing half-builds)."""
        missing = self.missing(lock)
        if missing:
            raise WheelhouseError(
                f"the wheelhouse {self.path} has no wheel for {', '.join(missing)}; "
                "prepare it on a machine that reaches the package index "
                "(modelyard.images.prepare_wheelhouse, or pip download --no-deps "
                f"--only-binary=:all: -d {self.path} {' '.join(missing)})"
            )
        have = self.wheels()
        return {
            name: have[(canonical_name(name), _canonical_version(version))]
            for name, version in lock.items()
        }


def prepare_wheelhouse(
    lock: Mapping[str, str],
    dest: Path | None = None,
    *,
    python_version: str = "3.11",
    platforms: Sequence[str] | None = None,
    pip: Sequence[str] = (sys.executable, "-m", "pip"),
    progress: Callable[[str], None] | None = None,
) -> Wheelhouse:
    """Fetch on the host a wheel for every ``name: version`` of ``lock`` that ``dest`` lacks.

    Binary wheels are downloaded for the image's interpreter and platform (not the host's);
    a package published only as a source archive is built into a wheel on the host, which is
    right for pure-Python packages. Already-present wheels cost nothing, so a warm wheelhouse
    needs no network at all.
    """
    house = Wheelhouse(dest or default_wheelhouse_dir())
    house.path.mkdir(parents=True, exist_ok=True)
    todo = house.missing(lock)
    if not todo:
        return house
    say = progress or (lambda _msg: None)
    say(f"fetching {len(todo)} wheel(s) into {house.path}")
    arch = platform.machine() or "x86_64"
    tags = platforms or [f"{p}_{arch}" for p in DEFAULT_MANYLINUX]
    abi = "cp" + python_version.replace(".", "")
    target = ["--python-version", python_version, "--implementation", "cp"]
    target += ["--abi", abi, "--abi", "abi3", "--abi", "none"]
    for tag in tags:
        target += ["--platform", tag]
    remaining = list(todo)
    for _ in range(len(todo) + 1):
        if not remaining:
            break
        proc = _pip(
            [*pip, "download", "--no-deps", "--only-binary=:all:", "-d", str(house.path)]
            + target
            + remaining
        )
        if proc.returncode == 0:
            break
        failed = _failed_requirement(proc.stderr + proc.stdout, remaining)
        if failed is None:
            raise WheelhouseError(
                f"could not fetch wheels for {', '.join(remaining)}: {_tail(proc.stderr)}"
            )
        # No binary wheel for the image's platform: build one from the source archive.
        say(f"building a wheel for {failed} from source on the host")
        built = _pip([*pip, "wheel", "--no-deps", "-w", str(house.path), failed])
        if built.returncode != 0:
            raise WheelhouseError(
                f"no wheel for {failed} in the package index, and building one failed: "
                f"{_tail(built.stderr)}"
            )
        remaining.remove(failed)
    still = house.missing(lock)
    if still:
        raise WheelhouseError(f"the wheelhouse {house.path} still lacks {', '.join(still)}")
    return house


def _pip(cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return subprocess.run(list(cmd), capture_output=True, text=True, env=env, timeout=1800)


def _failed_requirement(output: str, candidates: Iterable[str]) -> str | None:
    match = re.search(r"No matching distribution found for (\S+)", output)
    if match is None:
        return None
    wanted = match.group(1)
    for req in candidates:
        name = req.split("==")[0]
        if canonical_name(wanted.split("==")[0]) == canonical_name(name):
            return req
    return None


def _tail(text: str, lines: int = 3) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()]
    return " | ".join(kept[-lines:]) or "(no output)"


# -- the lock of the running environment -----------------------------------------------------


def lock_from_environment(
    roots: Iterable[str], *, exclude: Iterable[str] = ("modelyard",)
) -> dict[str, str]:
    """Exact versions of ``roots`` (requirement strings, extras allowed: ``modelyard[serve]``)
    and everything they need, as installed in *this* interpreter — what a run actually used.

    Markers are evaluated for this interpreter, which matches a Linux image of the same Python;
    ``exclude`` drops packages the image gets another way (modelyard's own runtime wheel).
    """
    import importlib.metadata as md

    from packaging.requirements import Requirement

    skip = {canonical_name(n) for n in exclude}
    lock: dict[str, str] = {}
    seen: set[tuple[str, frozenset[str]]] = set()
    queue = [Requirement(r) for r in roots]
    while queue:
        req = queue.pop()
        name = canonical_name(req.name)
        key = (name, frozenset(req.extras))
        if key in seen:
            continue
        seen.add(key)
        try:
            dist = md.distribution(req.name)
        except md.PackageNotFoundError:
            raise WheelhouseError(
                f"{req.name} is required but not installed in {sys.prefix}; install it first"
            ) from None
        if name not in skip:
            lock[dist.metadata["Name"]] = dist.version
        for raw in dist.requires or []:
            sub = Requirement(raw)
            if sub.marker is None:
                queue.append(sub)
                continue
            envs = [{"extra": e} for e in req.extras] or [{"extra": ""}]
            if any(sub.marker.evaluate(env) for env in envs):
                queue.append(sub)
    return dict(sorted(lock.items(), key=lambda kv: canonical_name(kv[0])))


# -- modelyard's own wheel -------------------------------------------------------------------


# What the package ships. An editable checkout's folder can also hold a developer's ``.env``,
# editor swap files or notes; packing "everything under the folder" would put them into every
# model image's runtime layer, so only these kinds of file, outside dot-folders, are packed.
PACKAGE_SUFFIXES = frozenset(
    {".py", ".pyi", ".proto", ".typed", ".mako", ".md", ".html", ".js", ".css", ".svg"}
)


def package_files(package_dir: Path) -> list[Path]:
    """The files of ``package_dir`` that belong in its wheel, sorted."""
    found = []
    for path in sorted(package_dir.rglob("*")):
        relative = path.relative_to(package_dir)
        if (
            path.is_file()
            and path.suffix in PACKAGE_SUFFIXES
            and not any(part.startswith(".") or part == "__pycache__" for part in relative.parts)
        ):
            found.append(path)
    return found


def build_modelyard_wheel(dest_dir: Path | None = None) -> Path:
    """A wheel of the modelyard package *as imported now* (editable checkout or installed), with
    its installed metadata (requirements, entry points). Packed directly, so it needs neither a
    network nor a build backend, and is cached by the hash of its contents: unchanged code gives
    the same file and the image's runtime layer stays cached."""
    import importlib.metadata as md

    package_dir = Path(__file__).resolve().parents[1]  # the modelyard package: images/..
    dist = md.distribution("modelyard")
    version = dist.version
    metadata = (
        dist.read_text("METADATA")
        or f"Metadata-Version: 2.1\nName: modelyard\nVersion: {version}\n"
    )
    entry_points = dist.read_text("entry_points.txt") or ""

    files: list[tuple[str, bytes]] = []
    for path in package_files(package_dir):
        files.append((f"modelyard/{path.relative_to(package_dir).as_posix()}", path.read_bytes()))
    info = f"modelyard-{version}.dist-info"
    files.append((f"{info}/METADATA", metadata.encode()))
    files.append(
        (
            f"{info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: modelyard\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        )
    )
    if entry_points:
        files.append((f"{info}/entry_points.txt", entry_points.encode()))

    digest = hashlib.sha256()
    for name, data in files:
        digest.update(name.encode() + b"\0" + hashlib.sha256(data).digest())
    key = digest.hexdigest()[:16]
    folder = (dest_dir or default_wheelhouse_dir()) / "modelyard" / key
    wheel = folder / f"modelyard-{version}-py3-none-any.whl"
    if wheel.is_file():
        return wheel
    folder.mkdir(parents=True, exist_ok=True)
    record = [
        f"{name},sha256={_b64(hashlib.sha256(data).digest())},{len(data)}" for name, data in files
    ]
    record.append(f"{info}/RECORD,,")
    files.append((f"{info}/RECORD", ("\n".join(record) + "\n").encode()))
    tmp = wheel.with_suffix(".tmp")
    with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in files:
            # Fixed timestamps: the same code always gives the same bytes.
            entry = zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0))
            entry.external_attr = 0o644 << 16
            zf.writestr(entry, data, compress_type=zipfile.ZIP_DEFLATED)
    tmp.replace(wheel)
    return wheel


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
