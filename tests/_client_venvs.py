"""Venvs of their own for clients whose pins would change the dev venv (kserve pins pandas < 3
and psutil < 6): made once per machine, reused while their requirements stay the same."""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest


def client_python(name: str, requirements: list[str]) -> Path:
    """The python of a venv holding ``requirements``; skips (fails under CI=true) if pip cannot
    install them."""
    root = Path(
        os.environ.get("MODELYARD_CLIENT_VENVS")
        or Path(tempfile.gettempdir()) / "modelyard-client-venvs"
    )
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
            message = f"cannot install {' '.join(requirements)}: {done.stderr[-1500:]}"
            if os.environ.get("CI") == "true":
                pytest.fail(message)
            pytest.skip(message)
        (venv / ".complete").touch()
    return python
