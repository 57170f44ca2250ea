"""What the model-server benchmarks (``ab.py``, ``../soak.py``) share: the benchmark's logistic
regression saved as a modelyard model, a model server process started and waited for, ``wrk``
rounds, and the server's CPU time, RSS and open files read from ``/proc``."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench_models import fitted_models, training_data

START_TIMEOUT_S = 180.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def save_lr(folder: Path) -> Path:
    """The benchmark's logistic regression as a modelyard model folder (tensor signature)."""
    from modelyard.flavors import save_model

    x, _ = training_data()
    save_model(fitted_models()["lr"], folder, input_example=x[:5])
    return folder


def start_model_server(
    model_dir: Path,
    port: int,
    log_dir: Path,
    output: Path,
    *,
    src: Path | None = None,
    name: str = "lr",
) -> subprocess.Popen[bytes]:
    """``python -m modelyard.serving`` on ``model_dir`` (prediction log in ``log_dir``, metrics
    on), from the source tree ``src`` if given; returns once it accepts connections."""
    env = dict(os.environ, PYTHONPATH=str(src)) if src is not None else None
    cmd = [
        sys.executable, "-m", "modelyard.serving", "--model-dir", str(model_dir),
        "--name", name, "--host", "127.0.0.1", "--port", str(port),
        "--log-dir", str(log_dir), "--log-level", "warning",
    ]  # fmt: skip
    with output.open("wb") as out:
        proc = subprocess.Popen(cmd, env=env, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            socket.create_connection(("127.0.0.1", port)).close()
            return proc
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                proc.wait()
                raise SystemExit(f"the server did not start; see {output}") from None
            time.sleep(0.05)  # polling a process we do not control


def stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (a graceful stop: the server closes its log segments), SIGKILL if it hangs."""
    proc.terminate()
    try:
        proc.wait(60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wrk(url: str, lua: Path, conns: int, seconds: float) -> tuple[int, float, str]:
    """One ``wrk -t1`` round: (requests answered, req/s, wrk's output); refuses non-2xx."""
    out = subprocess.run(
        ["wrk", "-t", "1", "-c", str(conns), "-d", f"{seconds:g}s", "-s", str(lua), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise SystemExit(f"non-2xx answers from {url}:\n{out}")
    done = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    return done, rps, out


def post_lua(lua: Path, body: bytes, content_type: str = "application/json") -> Path:
    """A wrk script posting ``body`` (kept in a file beside it: any bytes, any size)."""
    body_file = lua.with_suffix(".body")
    body_file.write_bytes(body)
    lua.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "{content_type}"\n'
        f'local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*all")\nf:close()\n'
    )
    return lua


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far (all its threads)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_usage(pid: int) -> tuple[int, int]:
    """(RSS bytes, open fds) of ``pid`` and all its children."""
    import psutil

    root = psutil.Process(pid)
    rss = fds = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            rss += proc.memory_info().rss
            fds += proc.num_fds()
        except psutil.NoSuchProcess:
            continue
    return rss, fds
