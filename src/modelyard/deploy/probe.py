"""Small network checks shared by the targets: is a port free, is a server ready."""

from __future__ import annotations

import json
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from typing import Any

from modelyard.errors import DeployError


def require_free_port(port: int, host: str = "127.0.0.1") -> None:
    """:class:`DeployError` naming the port when something already listens on it."""
    if not 0 < port < 65536:
        raise DeployError(f"port {port} is not a port number")
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            raise DeployError(
                f"port {port} on {host} is already in use; choose another with --port"
            ) from None


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def get_json(url: str, timeout: float = 2.0) -> Any | None:
    """The JSON body of a 200 answer, else None (refused, 5xx, timeout)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return json.loads(resp.read() or b"null") if resp.status == 200 else None
    except (OSError, ValueError):
        return None


def get_text(url: str, timeout: float = 2.0) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            return resp.read().decode(errors="replace") if resp.status == 200 else None
    except (OSError, urllib.error.URLError):
        return None


def wait_until(
    check: Callable[[], bool],
    *,
    timeout: float,
    alive: Callable[[], bool] = lambda: True,
    interval: float = 0.1,
) -> bool:
    """Poll ``check`` until it is true (True), ``alive`` turns false or ``timeout`` passes
    (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        if not alive():
            return check()
        time.sleep(interval)
    return False


def serves_version(base_url: str, name: str, version: int) -> bool:
    """Ready, and answering as ``name`` version ``version`` (not a previous one)."""
    meta = get_json(f"{base_url}/v2/models/{name}")
    if not isinstance(meta, dict):
        return False
    return str(version) in [str(v) for v in meta.get("versions", [])]
