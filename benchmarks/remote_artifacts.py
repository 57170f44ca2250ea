"""A large artifact to and from the team server: throughput and the peak memory of both ends.

    .venv/bin/python benchmarks/remote_artifacts.py [--size-mb 1024] [--s3 http://127.0.0.1:5002]

Starts ``modelyard server`` as a process over a fresh workspace, then a client process uploads a
random file of ``--size-mb`` through :class:`~modelyard.remote.RemoteArtifactStore` and
downloads it again to another folder. Prints MB/s each way and the peak resident memory (VmHWM)
of the client and of the server, which must stay flat whatever the size: both stream.

With ``--s3 ENDPOINT`` the server's artifacts live in a fresh bucket on that S3 server (moto's
``moto_server`` from ``scripts/services.sh``), so the client moves the bytes straight to and
from the bucket with presigned URLs and the server only verifies the upload (reading it once
from the bucket) and copies it to its key. The S3 server's own peak memory is printed too.
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
from typing import Any

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
    parser.add_argument("--s3", metavar="ENDPOINT", help="artifacts in a bucket on this server")
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="modelyard-bench-remote-"))
    bucket: dict[str, str] = {}
    try:
        if args.s3:
            bucket = _bucket(args.s3)
        run(root, args.size_mb, bucket)
    finally:
        shutil.rmtree(root, ignore_errors=True)
        if bucket:
            _drop_bucket(bucket)


def _s3(env: dict[str, str]) -> Any:
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name=env["AWS_REGION"],
    )


def _bucket(endpoint: str) -> dict[str, str]:
    """A fresh bucket and the environment that points a workspace at it."""
    name = f"modelyard-bench-{os.getpid()}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench-secret",
        "AWS_REGION": "us-east-1",
        "MODELYARD_ARTIFACTS_URL": f"s3://{name}/bench",
    }
    _s3(env).create_bucket(Bucket=name)
    return env


def _drop_bucket(env: dict[str, str]) -> None:
    client = _s3(env)
    name = env["MODELYARD_ARTIFACTS_URL"].split("/")[2]
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
        for obj in page.get("Contents", []):
            client.delete_object(Bucket=name, Key=obj["Key"])
    client.delete_bucket(Bucket=name)


def _listener_pid(endpoint: str) -> int | None:
    """The pid of the process listening on the endpoint's port (to read its memory)."""
    import psutil

    port = int(endpoint.rsplit(":", 1)[1].strip("/"))
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return int(conn.pid)
    return None


def run(root: Path, size_mb: int, bucket: dict[str, str]) -> None:
    ws, _ = Workspace.init(root / "server", environ=bucket)
    _, token = ws.store.tokens.create("bench", "admin")
    ws.close()
    blob = root / "big.bin"
    _write_random(blob, size_mb)
    port = _port()
    url = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MODELYARD_")}
    client_env = dict(env)
    env.update(bucket)  # the server's settings; the client needs none of them
    s3_pid = _listener_pid(bucket["AWS_ENDPOINT_URL"]) if bucket else None
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
            env=client_env,
        )
        if done.returncode != 0:
            raise SystemExit(f"the client failed:\n{done.stderr[-3000:]}")
        import json

        result = json.loads(done.stdout)
        server_peak = _hwm_mib(server.pid)
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    back = root / "client" / "back.bin"
    assert back.stat().st_size == blob.stat().st_size, "the download is incomplete"
    where = f"bucket on {bucket['AWS_ENDPOINT_URL']}" if bucket else "the server's folder"
    print(f"artifact: {size_mb} MiB ({result['digest'][:19]}…) into {where}")
    print(f"upload:   {size_mb / result['up_s']:7.1f} MiB/s ({result['up_s']:.1f} s)")
    print(f"download: {size_mb / result['down_s']:7.1f} MiB/s ({result['down_s']:.1f} s)")
    print(f"client peak RSS (VmHWM): {result['peak_mib']:.0f} MiB")
    print(f"server peak RSS (VmHWM): {server_peak:.0f} MiB (after start: {idle:.0f} MiB)")
    if s3_pid is not None:
        print(f"S3 server peak RSS (VmHWM): {_hwm_mib(s3_pid):.0f} MiB (pid {s3_pid})")
    print(f"load average: {'/'.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
