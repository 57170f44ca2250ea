"""modelyard's server vs its peers and a bare ASGI app: same models, same wrk load, one run.

    .venv/bin/python benchmarks/serving/run.py --setup-peers   # once: mlflow, BentoML venvs
    .venv/bin/python benchmarks/serving/run.py [--duration 5] [--only lr] [--servers a,b]

Servers: ``bare`` (bare_app.py: parse JSON, call predict — the ceiling), ``modelyard``
(``python -m modelyard.serving`` with prediction logging and metrics on), the same server
loaded through V2 binary tensors over HTTP (``modelyard-binary``, wrk) and V2 gRPC
(``modelyard-grpc``, grpc_load.py: a Python loop, so a lower bound), ``mlflow``
(``mlflow models serve --env-manager local``), ``bentoml`` and ``bentoml-batch``
(bento_service.py without/with adaptive batching). The peers run from their own venvs
(/tmp/bench-mlflow, /tmp/bench-bentoml, or BENCH_MLFLOW_VENV / BENCH_BENTOML_VENV); a peer that
is not installed is skipped with a message. Every server gets the same scikit-learn models
(bench_models.py, fitted on the same seeded data in each venv) and the same request bodies.

Prints req/s and p50/p99 for 1 row at c=1/16/64 and 100-row batches at c=16, each with its
ratio to the bare app, for the tensor models (``lr``, ``rf``: ``{"instances": rows}``) and for
``df``, a logistic regression fitted on a DataFrame of 30 named float columns, sent as MLflow's
``dataframe_split`` and ``dataframe_records`` (bare and modelyard only: the DataFrame path),
plus cold start (process start to first answered request) and RSS
(summed over the server's process tree) after warm-up, and the load average.

Cold starts are measured first, before any load has run, each server started ``--cold-starts``
times in turn (default 5), and reported as the median and the fastest: one start on a shared
2-core machine says more about the neighbours than about the server.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_models import (  # noqa: E402
    FRAME_COLUMNS,
    N_FEATURES,
    fitted_frame_model,
    fitted_models,
    training_data,
)

SCENARIOS = [
    ("1 row c=1", 1, 1),
    ("1 row c=16", 1, 16),
    ("1 row c=64", 1, 64),
    ("100 rows c=16", 100, 16),
]
#: How each model's requests are spelled: the DataFrame model in both MLflow frame formats.
FORMATS = {"lr": ("instances",), "rf": ("instances",), "df": ("split", "records")}
#: The servers that take the DataFrame model (the peers and the tensor variants do not).
FRAME_SERVERS = ("bare", "modelyard")
SERVERS = (
    "bare",
    "modelyard",
    "modelyard-serve",
    "modelyard-binary",
    "modelyard-grpc",
    "mlflow",
    "bentoml",
    "bentoml-batch",
)
#: The modelyard server again, loaded through another protocol: V2 binary tensors over HTTP
#: (wrk), and V2 gRPC (grpc_load.py, a Python loop: slower than wrk, so a lower bound).
#: Their cold start is modelyard's, so it is measured once, for "modelyard".
VARIANTS = {"modelyard-binary": "modelyard", "modelyard-grpc": "modelyard"}
#: ``modelyard serve NAME@VERSION`` (the CLI: reads the workspace's registry first, then serves
#: the same app in-process): measured for its cold start only, its load is modelyard's.
COLD_ONLY = ("modelyard-serve",)
PEER_VENVS = {
    "mlflow": (
        Path(os.environ.get("BENCH_MLFLOW_VENV", "/tmp/bench-mlflow")),
        ["mlflow", "scikit-learn"],
    ),
    "bentoml": (
        Path(os.environ.get("BENCH_BENTOML_VENV", "/tmp/bench-bentoml")),
        ["bentoml", "scikit-learn", "joblib"],
    ),
}
START_TIMEOUT_S = 180.0

Result = tuple[float, float, float]


def setup_peers() -> None:
    """One venv per peer, so their dependency pins never meet modelyard's or each other's."""
    for name, (venv, packages) in PEER_VENVS.items():
        print(f"{name}: creating {venv} and installing {' '.join(packages)}", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", *packages], check=True)


def _peer_python(peer: str) -> Path | None:
    venv = PEER_VENVS[peer][0]
    exe = venv / "bin" / ("mlflow" if peer == "mlflow" else "bentoml")
    return venv / "bin" / "python" if exe.is_file() else None


def _modelyard_models(root: Path) -> dict[str, Path]:
    from modelyard.flavors import save_model

    x, _ = training_data()
    out = {}
    for name, model in fitted_models().items():
        out[name] = root / "modelyard" / name
        save_model(model, out[name], input_example=x[:5])
    frame_model, frame = fitted_frame_model()
    out["df"] = root / "modelyard" / "df"
    save_model(frame_model, out["df"], input_example=frame[:5])
    return out


def _registered(root: Path) -> Path:
    """A workspace where each benchmark model is registered (NAME@1), for ``modelyard serve``."""
    from modelyard import models
    from modelyard.tracking import start_run
    from modelyard.workspace import Workspace

    ws, _ = Workspace.init(root / "ws", environ={})
    x, _ = training_data()
    frame_model, frame = fitted_frame_model()
    for name, (model, example) in {
        **{n: (m, x[:5]) for n, m in fitted_models().items()},
        "df": (frame_model, frame[:5]),
    }.items():
        with start_run(f"bench-{name}", workspace=ws) as run:
            run.log_model(model, input_example=example)
        models.register(run.id, name, workspace=ws)
    ws.close()
    return root / "ws"


def _body(fmt: str, rows: int) -> bytes:
    """A request of ``rows`` rows: ``instances`` (tensor models) or a DataFrame format."""
    if fmt == "instances":
        row = "[" + ",".join(["0.5"] * N_FEATURES) + "]"
        return ('{"instances": [' + ",".join([row] * rows) + "]}").encode()
    values = [0.5 + 0.01 * i for i in range(len(FRAME_COLUMNS))]
    if fmt == "split":
        split = {"columns": FRAME_COLUMNS, "data": [values] * rows}
        return json.dumps({"dataframe_split": split}).encode()
    record = dict(zip(FRAME_COLUMNS, values, strict=True))
    return json.dumps({"dataframe_records": [record] * rows}).encode()


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start(
    cmd: list[str], env: dict[str, str], port: int, log: Path, probe: bytes
) -> tuple[subprocess.Popen[bytes], float]:
    started = time.monotonic()
    with log.open("wb") as out:
        proc = subprocess.Popen(
            cmd, env=env, stdout=out, stderr=subprocess.STDOUT, cwd=HERE, start_new_session=True
        )
    try:
        return proc, _wait_answering(proc, port, started, log, probe)
    except BaseException:  # Ctrl-C too: never leave a server behind in its own session
        _stop(proc)
        raise


def _launch(
    commands: dict[str, Callable[[str, int], tuple[list[str], dict[str, str]]]],
    root: Path,
    model: str,
    server: str,
) -> tuple[subprocess.Popen[bytes], float, int] | None:
    """Start ``server`` for ``model``: (process, seconds to its first answer, port), or None
    after saying why it did not start."""
    port = _port()
    cmd, extra_env = commands[server](model, port)
    log = root / f"{server}-{model}.log"
    try:
        probe = _body(FORMATS[model][0], 1)
        proc, cold = _start(cmd, dict(os.environ, **extra_env), port, log, probe)
    except RuntimeError as exc:
        print(f"{model:3} {server:13} did not start: {exc}", flush=True)
        return None
    return proc, cold, port


def _wait_answering(
    proc: subprocess.Popen[bytes], port: int, started: float, log: Path, body: bytes
) -> float:
    headers = {"content-type": "application/json"}
    while time.monotonic() - started < START_TIMEOUT_S:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}; see {log}")
        try:
            url = f"http://127.0.0.1:{port}/invocations"
            answer = httpx.post(url, content=body, headers=headers, timeout=2)
            if answer.status_code == 200:
                return time.monotonic() - started
        except httpx.TransportError:
            pass
        time.sleep(0.02)  # polling a process we do not control; not test synchronisation
    raise RuntimeError(f"not answering after {START_TIMEOUT_S:.0f}s; see {log}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the server's whole process group (peers serve from child processes)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=60)
            break
        except subprocess.TimeoutExpired:
            continue
    proc.wait()


def _wrk(
    port: int,
    rows: int,
    conns: int,
    duration: int,
    lua: Path,
    binary_model: str | None = None,
    fmt: str = "instances",
) -> Result:
    """wrk against /invocations (JSON, ``fmt``: see :func:`_body`), or with ``binary_model``
    against that model's V2 ``infer`` with binary tensors both ways (the request
    tritonclient's default ``infer`` sends)."""
    if binary_model is None:
        body = _body(fmt, rows)
        content_type, extra = "application/json", ""
        url = f"http://127.0.0.1:{port}/invocations"
    else:
        raw = b"".join([struct.pack("<d", 0.5)] * (rows * N_FEATURES))
        head = json.dumps(
            {
                "inputs": [
                    {
                        "name": "input-0",
                        "shape": [rows, N_FEATURES],
                        "datatype": "FP64",
                        "parameters": {"binary_data_size": len(raw)},
                    }
                ],
                "parameters": {"binary_data_output": True},
            }
        ).encode()
        body = head + raw
        content_type = "application/octet-stream"
        extra = f'wrk.headers["Inference-Header-Content-Length"] = "{len(head)}"\n'
        url = f"http://127.0.0.1:{port}/v2/models/{binary_model}/infer"
    body_file = lua.with_suffix(".body")
    body_file.write_bytes(body)
    lua.write_text(
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "{content_type}"\n{extra}'
        f'local f = io.open("{body_file}", "rb")\nwrk.body = f:read("*all")\nf:close()\n'
    )
    cmd = ["wrk", "-t", "1", "-c", str(conns), "-d", f"{duration}s", "--latency", "-s", str(lua)]
    out = subprocess.run([*cmd, url], capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    if "Non-2xx" in out:
        raise RuntimeError(f"non-2xx answers:\n{out}")

    def pct(p: str) -> float:
        value, unit = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out).groups()  # type: ignore[union-attr]
        return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]

    return rps, pct("50"), pct("99")


def grpc_port(http_port: int) -> int:
    """The gRPC port of the server on ``http_port`` (a free port, fixed per HTTP port)."""
    if http_port not in _GRPC_PORTS:
        _GRPC_PORTS[http_port] = _port()
    return _GRPC_PORTS[http_port]


_GRPC_PORTS: dict[int, int] = {}


def _grpc_load(port: int, model: str, rows: int, conns: int, duration: int) -> Result:
    cmd = [sys.executable, "grpc_load.py", str(port), model, str(rows), str(conns), str(duration)]
    done = subprocess.run(cmd, cwd=HERE, capture_output=True, text=True, check=True)
    out = json.loads(done.stdout.strip().splitlines()[-1])
    if out["errors"]:
        raise RuntimeError(f"{out['errors']} gRPC calls failed")
    return out["rps"], out["p50_ms"], out["p99_ms"]


def _load(
    server: str,
    model: str,
    port: int,
    rows: int,
    conns: int,
    duration: int,
    lua: Path,
    fmt: str,
) -> Result:
    if server == "modelyard-grpc":
        return _grpc_load(grpc_port(port), model, rows, conns, duration)
    binary = model if server == "modelyard-binary" else None
    return _wrk(port, rows, conns, duration, lua, binary_model=binary, fmt=fmt)


def _scenarios(model: str) -> list[tuple[str, int, int, str]]:
    """(label, rows, connections, format) of every load the model is put under."""
    fmts = FORMATS[model]
    return [
        (label if len(fmts) == 1 else f"{label} {fmt}", rows, conns, fmt)
        for label, rows, conns in SCENARIOS
        for fmt in fmts
    ]


def _tree_rss_mib(pid: int) -> float:
    """RSS of a process and all its descendants (mlflow and BentoML serve from children)."""
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
            for task in Path(f"/proc/{current}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return total / 1024


def _commands(
    root: Path, models: dict[str, Path], peer_dirs: dict[str, Path]
) -> dict[str, Callable[[str, int], tuple[list[str], dict[str, str]]]]:
    py = sys.executable
    quiet = ["--log-level", "warning"]

    def bare(model: str, port: int) -> tuple[list[str], dict[str, str]]:
        cmd = [py, "-m", "uvicorn", "--factory", "bare_app:create", "--port", str(port)]
        return [*cmd, "--no-access-log", *quiet], {"MODEL_DIR": str(models[model])}

    def modelyard(model: str, port: int) -> tuple[list[str], dict[str, str]]:
        cmd = [py, "-m", "modelyard.serving", "--model-dir", str(models[model]), "--name", model]
        log_dir = str(root / "predlog" / model)
        return [*cmd, "--host", "127.0.0.1", "--port", str(port), "--log-dir", log_dir, *quiet], {}

    def modelyard_serve(model: str, port: int) -> tuple[list[str], dict[str, str]]:
        ws = str(root / "ws")
        cmd = [str(Path(py).parent / "modelyard"), "-C", ws, "serve", f"{model}@1"]
        return [*cmd, "--port", str(port)], {}

    def modelyard_grpc(model: str, port: int) -> tuple[list[str], dict[str, str]]:
        cmd, env = modelyard(model, port)
        return [*cmd, "--grpc-port", str(grpc_port(port))], env

    def mlflow(model: str, port: int) -> tuple[list[str], dict[str, str]]:
        exe = str(PEER_VENVS["mlflow"][0] / "bin" / "mlflow")
        cmd = [exe, "models", "serve", "-m", str(peer_dirs["mlflow"] / model)]
        path = f"{PEER_VENVS['mlflow'][0] / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"
        return [*cmd, "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port)], {
            "PATH": path  # mlflow execs `uvicorn` from PATH
        }

    def bentoml(batching: bool) -> Callable[[str, int], tuple[list[str], dict[str, str]]]:
        def command(model: str, port: int) -> tuple[list[str], dict[str, str]]:
            exe = str(PEER_VENVS["bentoml"][0] / "bin" / "bentoml")
            cmd = [exe, "serve", "bento_service:Model", "--host", "127.0.0.1", "--port", str(port)]
            env = {
                "BENCH_MODEL": str(peer_dirs["bentoml"] / f"{model}.joblib"),
                "BENCH_BATCHING": "1" if batching else "0",
                "BENTOML_DO_NOT_TRACK": "True",
                "BENTOML_HOME": str(root / "bentoml-home"),
            }
            return cmd, env

        return command

    return {
        "bare": bare,
        "modelyard": modelyard,
        "modelyard-serve": modelyard_serve,
        "modelyard-binary": modelyard,
        "modelyard-grpc": modelyard_grpc,
        "mlflow": mlflow,
        "bentoml": bentoml(False),
        "bentoml-batch": bentoml(True),
    }


def _peer_models(root: Path, wanted: list[str]) -> dict[str, Path]:
    """Each installed peer saves the models in its own format, from its own venv."""
    dirs = {}
    for peer, kind in (("mlflow", "mlflow"), ("bentoml", "joblib")):
        if not any(s.startswith(peer) for s in wanted):
            continue
        python = _peer_python(peer)
        if python is None:
            print(
                f"{peer}: not installed in {PEER_VENVS[peer][0]} (run with --setup-peers); skipped",
                flush=True,
            )
            continue
        out = root / peer
        done = subprocess.run(
            [str(python), "peer_models.py", kind, str(out)],
            cwd=HERE,
            capture_output=True,
            text=True,
        )
        if done.returncode != 0:
            print(f"{peer}: saving the models failed; skipped\n{done.stderr[-2000:]}", flush=True)
            continue
        dirs[peer] = out
    return dirs


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk scenario")
    parser.add_argument("--setup-peers", action="store_true", help="create the peers' venvs")
    parser.add_argument(
        "--only", choices=tuple(FORMATS), default=None, help="one model only (df: DataFrame)"
    )
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated subset")
    parser.add_argument(
        "--cold-starts", type=int, default=5, help="starts per server for the cold-start median"
    )
    args = parser.parse_args()
    if args.setup_peers:
        setup_peers()
        return
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")
    wanted = [s for s in args.servers.split(",") if s]
    unknown = set(wanted) - set(SERVERS)
    if unknown:
        raise SystemExit(f"unknown servers {sorted(unknown)}; choose from {', '.join(SERVERS)}")
    root = Path(tempfile.mkdtemp(prefix="modelyard-bench-"))
    load_before = os.getloadavg()
    models = _modelyard_models(root)
    peer_dirs = _peer_models(root, wanted)
    servers = [
        s for s in wanted if s.split("-")[0] not in PEER_VENVS or s.split("-")[0] in peer_dirs
    ]
    commands = _commands(root, models, peer_dirs)
    names = [args.only] if args.only else list(models)
    results: dict[tuple[str, str, str], Result] = {}
    colds: dict[tuple[str, str], list[float]] = {}

    def serves(model: str, server: str) -> bool:
        return model != "df" or server in (*FRAME_SERVERS, *COLD_ONLY)

    if "modelyard-serve" in servers:
        _registered(root)

    for round_ in range(args.cold_starts):
        for model in names:
            for server in servers:
                if server in VARIANTS or not serves(model, server):
                    continue
                launched = _launch(commands, root, model, server)
                if launched is None:
                    continue
                proc, cold, _ = launched
                _stop(proc)
                colds.setdefault((model, server), []).append(cold)
                print(f"{model:3} {server:13} cold start #{round_ + 1}: {cold:.2f}s", flush=True)
    starts: dict[tuple[str, str], tuple[float, float, float]] = {}
    for model in names:
        for server in servers:
            if not serves(model, server) or server in COLD_ONLY:
                continue
            launched = _launch(commands, root, model, server)
            if launched is None:
                continue
            proc, cold, port = launched
            if server not in VARIANTS:
                times = sorted(colds.get((model, server), [cold]))
                starts[(model, server)] = (
                    statistics.median(times),
                    times[0],
                    _tree_rss_mib(proc.pid),
                )
                print(
                    f"{model:3} {server:13} RSS after first answer "
                    f"{starts[(model, server)][2]:.0f} MiB",
                    flush=True,
                )
            try:
                for label, rows, conns, fmt in _scenarios(model):
                    results[(model, server, label)] = _load(
                        server, model, port, rows, conns, args.duration, root / "body.lua", fmt
                    )
            except (RuntimeError, subprocess.CalledProcessError) as exc:
                print(f"{model:3} {server:13} failed under load: {exc}", flush=True)
            finally:
                _stop(proc)
    load_after = os.getloadavg()
    for model in names:
        for server in COLD_ONLY:
            if (model, server) in colds:
                times = sorted(colds[(model, server)])
                starts[(model, server)] = (statistics.median(times), times[0], float("nan"))
    _print_table(names, servers, results, starts)
    print(
        f"\nload average (1/5/15 min) before: {'/'.join(f'{v:.2f}' for v in load_before)}, "
        f"after: {'/'.join(f'{v:.2f}' for v in load_after)}; {os.cpu_count()} CPUs; "
        f"wrk -t1, {args.duration}s per scenario"
    )
    shutil.rmtree(root, ignore_errors=True)


def _print_table(
    names: list[str],
    servers: list[str],
    results: dict[tuple[str, str, str], Result],
    starts: dict[tuple[str, str], tuple[float, float, float]],
) -> None:
    print(
        f"\n{'model':5} {'scenario':22} {'server':16} {'req/s':>8} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'vs bare':>8}"
    )
    for model in names:
        for label, _, _, _ in _scenarios(model):
            bare = results.get((model, "bare", label))
            for server in servers:
                r = results.get((model, server, label))
                if r is None:
                    continue
                ratio = f"{r[0] / bare[0]:7.2f}x" if bare else "      -"
                print(
                    f"{model:5} {label:22} {server:16} {r[0]:8.0f} {r[1]:8.1f} {r[2]:8.1f} "
                    f"{ratio:>8}"
                )
    print(f"\n{'model':5} {'server':13} {'cold start s':>12} {'fastest s':>10} {'RSS MiB':>8}")
    for (model, server), (cold, fastest, rss) in starts.items():
        print(f"{model:5} {server:13} {cold:12.2f} {fastest:10.2f} {rss:8.0f}")


if __name__ == "__main__":
    main()
