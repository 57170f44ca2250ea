"""Venvs of their own for clients whose pins would change the dev venv (kserve pins pandas < 3
and psutil < 6; kfp pins kubernetes < 31; azure-ai-ml brings OpenTelemetry, storage and MSAL):
made once per machine, reused while their requirements stay the same.

``scripts/services.sh`` makes every venv in :data:`CLIENTS` ahead of the tests, with a time
budget of its own (``python tests/_client_venvs.py``), so no test waits for pip inside its own
timeout; a test that finds its venv missing still makes it (under a lock, once).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: Every client venv the suite uses, by name.
CLIENTS: dict[str, list[str]] = {
    "kserve": ["kserve==0.21.0"],
    "azure-ai-ml": ["azure-ai-ml>=1.20,<2"],
    # this checkout's [kubeflow] extra: the worker's --kfp modes run from it
    "kfp": [f"--editable={ROOT}[kubeflow]", "kfp==2.17.3", "kfp-kubernetes==2.17.3"],
}


class ClientVenvError(RuntimeError):
    """pip could not install a client venv's requirements."""


def _root() -> Path:
    return Path(
        os.environ.get("MODELYARD_CLIENT_VENVS")
        or Path(tempfile.gettempdir()) / "modelyard-client-venvs"
    )


def ensure(name: str) -> Path:
    """The python of the venv ``name`` (made now if missing); :class:`ClientVenvError` if pip
    fails."""
    requirements = CLIENTS[name]
    root = _root()
    root.mkdir(parents=True, exist_ok=True)
    key = hashlib.sha256("\n".join(sorted(requirements)).encode()).hexdigest()[:12]
    venv = root / f"{name}-{key}"
    python = venv / "bin" / "python"
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel sessions wait for one install
        if (venv / ".complete").is_file():
            return python
        shutil.rmtree(venv, ignore_errors=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        done = subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *requirements],
            capture_output=True,
            text=True,
            timeout=1200,
        )
        if done.returncode != 0:
            shutil.rmtree(venv, ignore_errors=True)
            raise ClientVenvError(f"cannot install {' '.join(requirements)}: {done.stderr[-1500:]}")
        (venv / ".complete").touch()
    return python


def client_python(name: str) -> Path:
    """The python of the client venv ``name``; skips (fails under CI=true) if pip cannot make
    it."""
    import pytest

    try:
        return ensure(name)
    except ClientVenvError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(str(exc))
        pytest.skip(str(exc))


def main() -> int:
    failed = 0
    for name in CLIENTS:
        started = time.monotonic()
        try:
            ensure(name)
        except (ClientVenvError, subprocess.SubprocessError, OSError) as exc:
            failed += 1
            print(f"client venvs: {name} failed: {exc}", flush=True)
        else:
            print(f"client venvs: {name} ready ({time.monotonic() - started:.0f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
