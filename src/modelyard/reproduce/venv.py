"""The interpreter a reproduction runs in: a fresh virtual environment built from the run's
recorded lock, or (``--env current``) the interpreter running ``reproduce``.

The fresh venv is made without pip (``python -m venv --without-pip``) and filled by this
interpreter's pip (``pip --python VENV``) with ``--no-deps``: the lock is exact and complete,
so nothing is resolved, only installed, from the package indexes pip is configured with (a
local index or wheel folder, ``PIP_FIND_LINKS``, or PyPI). Two packages come from elsewhere:

- ``modelyard`` itself, as a wheel of the modelyard running now (it may be an editable
  checkout that no index has), unless the checked-out code *is* modelyard;
- the project in the checked-out code, when its ``pyproject.toml`` names a package of the lock:
  installed from that code, which is what the run imported.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from modelyard.tracking.environment import Environment

_PIP_TIMEOUT_S = 3600.0


class EnvironmentFailed(Exception):
    """The environment could not be built; the message says why."""


@dataclass(frozen=True)
class Interpreter:
    python: str
    description: str


def current_interpreter() -> Interpreter:
    return Interpreter(sys.executable, f"the current interpreter {sys.executable} (--env current)")


def _canonical(name: str) -> str:
    from modelyard.images.wheelhouse import canonical_name

    return canonical_name(name)


def find_python(version: str) -> str:
    """An interpreter of the lock's ``major.minor``: this one if it fits, else one on PATH."""
    major_minor = ".".join(version.split(".")[:2])
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if here == major_minor:
        return sys.executable
    found = shutil.which(f"python{major_minor}")
    if found is None:
        raise EnvironmentFailed(
            f"the run used Python {version} and no python{major_minor} is on PATH "
            f"(this is Python {here}); install it or use --env current"
        )
    return found


def project_name(tree: Path) -> str | None:
    """The ``[project] name`` of the checked-out code's ``pyproject.toml``, if any."""
    try:
        doc = tomllib.loads((tree / "pyproject.toml").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    name = doc.get("project", {}).get("name")
    return str(name) if isinstance(name, str) else None


def fresh_venv(lock: Environment, dest: Path, tree: Path) -> Interpreter:
    """A new venv at ``dest`` with exactly the packages of ``lock``."""
    from modelyard.images.wheelhouse import build_modelyard_wheel

    python = find_python(lock.python_version)
    _run([python, "-m", "venv", "--without-pip", str(dest)], "creating the venv")
    venv_python = str(dest / "bin" / "python")
    project = project_name(tree)
    own = {_canonical(project)} if project and _canonical(project) in _names(lock) else set()
    requirements = [
        f"{name}=={version}"
        for name, version in sorted(lock.packages.items())
        if _canonical(name) not in own and _canonical(name) != "modelyard"
    ]
    pip = [sys.executable, "-m", "pip", "--python", venv_python, "install", "--no-deps"]
    pip += ["--no-input", "--disable-pip-version-check", "--quiet"]
    if requirements:
        listing = dest / "lock-requirements.txt"
        listing.write_text("\n".join(requirements) + "\n", encoding="utf-8")
        _run([*pip, "-r", str(listing)], f"installing {len(requirements)} locked packages")
    extra, parts = [], [f"{len(requirements)} locked packages from the package index"]
    if own:
        extra.append(str(tree))
        parts.append(f"{project} from the checked-out code")
    if "modelyard" in _names(lock) and "modelyard" not in own:
        extra.append(str(build_modelyard_wheel(dest / "wheels")))
        parts.append("modelyard from the running installation")
    if extra:
        _run([*pip, *extra], "installing " + ", ".join(parts[1:]))
    how = ", ".join(parts)
    return Interpreter(venv_python, f"a fresh venv of Python {lock.python_version} ({how})")


def _names(lock: Environment) -> set[str]:
    return {_canonical(n) for n in lock.packages}


def _run(cmd: list[str], what: str) -> None:
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=_PIP_TIMEOUT_S, check=False
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise EnvironmentFailed(f"{what} failed: {exc}") from None
    if done.returncode != 0:
        lines = [
            line
            for line in (done.stderr + done.stdout).strip().splitlines()
            if line.strip() and not line.startswith("WARNING: Location")
        ]
        raise EnvironmentFailed(f"{what} failed: {' | '.join(lines[-3:]) or done.returncode}")
