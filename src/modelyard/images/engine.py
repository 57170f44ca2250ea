"""The Docker engine, reached through the ``docker`` command line.

Why the CLI and not the Python SDK: the CLI already honours everything a site configures for
Docker — ``DOCKER_HOST``, contexts, TLS settings, credential helpers for registries — and it
is installed wherever an engine is. It costs one process per call, which is noise next to a
build or a container start.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelyard.errors import EngineUnavailable, ImageError

DEFAULT_SOCKET = "unix:///var/run/docker.sock"

# What the CLI prints when nothing answers on the socket (several Docker versions).
_UNREACHABLE = (
    "cannot connect to the docker daemon",
    "error during connect",
    "permission denied while trying to connect to the docker daemon",
)


@dataclass(frozen=True)
class DockerEngine:
    """One Docker engine. Building the object does no I/O; :meth:`ping` checks it answers."""

    host: str = DEFAULT_SOCKET
    binary: str = "docker"
    environ: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> DockerEngine:
        """The engine the ``docker`` CLI would talk to: ``$DOCKER_HOST`` or the local socket."""
        env = dict(os.environ if environ is None else environ)
        host = env.get("DOCKER_HOST") or DEFAULT_SOCKET
        binary = env.get("MODELYARD_DOCKER_BINARY") or "docker"
        return cls(host=host, binary=binary, environ=env)

    # -- low level ---------------------------------------------------------------------------

    def process_env(self) -> dict[str, str]:
        env = dict(self.environ) if self.environ else dict(os.environ)
        env["DOCKER_HOST"] = self.host
        # The legacy builder works with every engine and CLI; BuildKit needs the buildx plugin.
        env.setdefault("DOCKER_BUILDKIT", "0")
        env.setdefault("DOCKER_CLI_HINTS", "false")
        return env

    def command(self, args: Sequence[str]) -> list[str]:
        """The full ``docker ARGS`` command line, for callers that manage the process (a
        container whose output goes to a log file); run it with :meth:`process_env`."""
        return [self._binary_path(), *args]

    def _binary_path(self) -> str:
        path = shutil.which(self.binary, path=self.process_env().get("PATH"))
        if path is None:
            raise EngineUnavailable(
                f"no Docker engine reachable at {self.host}: the '{self.binary}' command line "
                "is not installed (run scripts/docker.sh, or install docker.io)"
            )
        return path

    def unavailable(self, detail: str = "") -> EngineUnavailable:
        extra = f" ({_first_line(detail)})" if detail.strip() else ""
        hint = (
            "set DOCKER_HOST to the engine's address"
            if self.host != DEFAULT_SOCKET
            else "start it (scripts/docker.sh) or set DOCKER_HOST"
        )
        return EngineUnavailable(f"no Docker engine reachable at {self.host}{extra}; {hint}")

    def run(
        self,
        args: Sequence[str],
        *,
        input: bytes | None = None,
        timeout: float | None = 120,
        check: bool = True,
    ) -> subprocess.CompletedProcess[bytes]:
        """Run ``docker ARGS``; a failure to reach the engine becomes :class:`EngineUnavailable`,
        any other failure (with ``check``) an :class:`ImageError` carrying the CLI's message."""
        cmd = [self._binary_path(), *args]
        try:
            proc = subprocess.run(
                cmd, input=input, capture_output=True, timeout=timeout, env=self.process_env()
            )
        except subprocess.TimeoutExpired:
            raise ImageError(
                f"'docker {' '.join(args[:2])}' did not finish in {timeout}s"
            ) from None
        if proc.returncode != 0:
            stderr = proc.stderr.decode(errors="replace")
            if _is_unreachable(stderr):
                raise self.unavailable(stderr)
            if check:
                raise ImageError(f"docker {' '.join(args[:2])} failed: {_first_line(stderr)}")
        return proc

    def stream(
        self, args: Sequence[str], *, on_line: Callable[[str], None] | None = None
    ) -> tuple[int, list[str]]:
        """Run ``docker ARGS`` and hand each output line (stdout and stderr, interleaved) to
        ``on_line`` as it arrives. Returns the exit status and every line, for a failure log."""
        cmd = [self._binary_path(), *args]
        lines: list[str] = []
        with subprocess.Popen(
            cmd,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.process_env(),
        ) as proc:
            assert proc.stdout is not None
            for raw in _lines(proc.stdout):
                lines.append(raw)
                if on_line is not None:
                    on_line(raw)
            code = proc.wait()
        if code != 0 and _is_unreachable("\n".join(lines[-5:])):
            raise self.unavailable("\n".join(lines[-5:]))
        return code, lines

    # -- queries -----------------------------------------------------------------------------

    def ping(self, timeout: float = 15) -> str:
        """The engine's version; raises :class:`EngineUnavailable` naming the socket."""
        proc = self.run(
            ["version", "--format", "{{.Server.Version}}"], timeout=timeout, check=False
        )
        version = proc.stdout.decode().strip()
        if proc.returncode != 0 or not version:
            raise self.unavailable(proc.stderr.decode(errors="replace"))
        return version

    def inspect_image(self, ref: str) -> dict[str, Any] | None:
        """``docker image inspect`` of ``ref``, or None when the engine has no such image."""
        proc = self.run(["image", "inspect", ref], check=False)
        if proc.returncode != 0:
            return None
        data = json.loads(proc.stdout)
        return data[0] if data else None

    def image_exists(self, ref: str) -> bool:
        return self.inspect_image(ref) is not None


def _is_unreachable(text: str) -> bool:
    low = text.lower()
    return any(marker in low for marker in _UNREACHABLE)


def _first_line(text: str) -> str:
    for line in text.strip().splitlines():
        line = line.strip()
        if line and not line.startswith("DEPRECATED") and "buildx" not in line.lower():
            return line
    return text.strip()


def _lines(stream: Any) -> Iterator[str]:
    for raw in iter(stream.readline, b""):
        yield raw.decode(errors="replace").rstrip("\n")
