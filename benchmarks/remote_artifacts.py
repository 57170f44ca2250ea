"""A large artifact to and from the team server: throughput and the peak memory of both ends.

    .venv/bin/python benchmarks/remote_artifacts.py [--size-mb 1024]

Starts ``modelyard server`` as a process over a fresh workspace, then a client process uploads a
random file of ``--size-mb`` through :class:`~modelyard.remote.RemoteArtifactStore` and
downloads it again to another folder. Prints MB/s each way and the peak resident memory (VmHWM)
of the client and of the server, which must stay flat whatever the size: both stream.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import httpx

from modelyard.workspace import Workspace

CLIENT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from modelyard.remote import RemoteArtifactStore, RemoteClient

    url, token, blob, root = sys.argv[1:5]
    client = RemoteClient(url, token)
    t0 = time.perf_counter()
    digest = RemoteArtifactStore(Path(root) / "up", client).put_file(Path(blob))
    t1 = time.perf_counter()
    RemoteArtifactStore(Path(root) / "down", client).export_file(digest, Path(root) / "back.bin")
    t2 = time.perf_counter()
    hwm = next(l for l in open("/proc/self/status") if l.startswith("VmHWM:"))
    print(json.dumps({"digest": digest, "up_s": t1 - t0, "down_s": t2 - t1,
                      "peak_mib": int(hwm.split()[1]) / 1024}))
    """
)


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _hwm_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmHWM for {pid}")


def _write_random(path: Path, size_mb: int) -> None:
    chunk = os.urandom(1 << 20)
    with path.open("wb") as out:
        for i in range(size_mb):  # distinct MiBs, so nothing deduplicates or compresses
            out.write(chunk[:-8] + i.to_bytes(8, "big"))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size-mb", type=int, default=1024)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="modelyard-bench-remote-"))
    try:
        run(root, args.size_mb)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(root: Path, size_mb: int) -> None:
    ws, _ = Workspace.init(root / "server", environ={})
    _, token = ws.store.tokens.create("bench", "admin")
    ws.close()
    blob = root / "big.bin"
    _write_random(blob, size_mb)
    port = _port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "modelyard"), "server", "--port", str(port)],
        cwd=root / "server",
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # polling a process we started; not test synchronisation
            try:
                if httpx.get(f"{url}/api/health", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not start")
            time.sleep(0.1)
        idle = _hwm_mib(server.pid)
        done = subprocess.run(
            [sys.executable, "-c", CLIENT, url, token, str(blob), str(root / "client")],
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        import json

        result = json.loads(done.stdout)
        server_peak = _hwm_mib(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    back = root / "client" / "back.bin"
    assert back.stat().st_size == blob.stat().st_size, "the download is incomplete"
    print(f"artifact: {size_mb} MiB ({result['digest'][:19]}…)")
    print(f"upload:   {size_mb / result['up_s']:7.1f} MiB/s ({result['up_s']:.1f} s)")
    print(f"download: {size_mb / result['down_s']:7.1f} MiB/s ({result['down_s']:.1f} s)")
    print(f"client peak RSS (VmHWM): {result['peak_mib']:.0f} MiB")
    print(f"server peak RSS (VmHWM): {server_peak:.0f} MiB (after start: {idle:.0f} MiB)")
    print(f"load average: {'/'.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
