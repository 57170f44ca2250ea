"""No-op re-run of the maintenance pipeline, side by side with ``dvc repro``.

    .venv/bin/python benchmarks/pipeline_noop.py [--repeat 5] [--rows 5000]

Both tools get the same work: the maintenance example's batch (``examples/maintenance``,
5,000 rows), collect → validate → prepare → train → evaluate → register. modelyard runs the
example's own pipeline file (which also has featurize and predict: eight steps); DVC runs an
equivalent ``dvc.yaml`` of the six stages, whose commands call the same functions with this
interpreter. Each tool runs once cold, then ``--repeat`` times with nothing changed (the
figure: median wall time of the whole command, interpreter start included), then once with
``n_estimators`` changed (train, evaluate and register run again).

DVC lives in the benchmark's own venv (``~/.cache/modelyard-bench/dvc-venv``, created with
``pip install dvc`` on first use), so it never touches modelyard's dependencies.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "examples" / "maintenance"
BENCH_CACHE = Path.home() / ".cache" / "modelyard-bench"
DVC_VENV = BENCH_CACHE / "dvc-venv"

STAGES = """
import json, sys
from pathlib import Path
import pandas as pd

sys.path.insert(0, sys.argv[2])
from pipeline import TARGET, check_against_profile, features

def params():
    import yaml
    return yaml.safe_load(Path("params.yaml").read_text())

stage = sys.argv[1]
p = params()
Path("work").mkdir(exist_ok=True)
if stage == "collect":
    batch = sorted(Path("data/incoming").glob("*.csv"))[-1]
    frame = pd.read_csv(batch)
    frame.to_parquet("work/snapshot.parquet", index=False)
    profile = {"columns": [
        {"name": c, "logical_type": "float", "min": float(frame[c].min()),
         "max": float(frame[c].max()), "mean": float(frame[c].mean())}
        for c in frame.columns if frame[c].dtype.kind in "if"]}
    Path("work/profile.json").write_text(json.dumps(profile))
elif stage == "validate":
    frame = pd.read_parquet("work/snapshot.parquet")
    profile = json.loads(Path("work/profile.json").read_text())
    problems = check_against_profile(frame, profile, p["tolerance"])
    problems = [x for x in problems if "is new" not in x]
    if problems:
        raise SystemExit("\\n".join(problems))
    frame.to_parquet("work/batch.parquet", index=False)
elif stage == "prepare":
    from sklearn.model_selection import train_test_split
    table = features(pd.read_parquet("work/batch.parquet"))
    train, test = train_test_split(table, test_size=p["test_size"], random_state=p["seed"],
                                   stratify=table[TARGET])
    train.to_parquet("work/train.parquet", index=False)
    test.to_parquet("work/test.parquet", index=False)
elif stage == "train":
    import joblib
    from sklearn.ensemble import RandomForestClassifier
    train = pd.read_parquet("work/train.parquet")
    model = RandomForestClassifier(n_estimators=p["n_estimators"], max_depth=p["max_depth"],
                                   class_weight="balanced", random_state=p["seed"], n_jobs=1)
    model.fit(train.drop(columns=[TARGET]), train[TARGET])
    joblib.dump(model, "work/model.joblib")
elif stage == "evaluate":
    import joblib
    from sklearn.metrics import roc_auc_score
    model = joblib.load("work/model.joblib")
    test = pd.read_parquet("work/test.parquet")
    proba = model.predict_proba(test.drop(columns=[TARGET]))[:, 1]
    auc = roc_auc_score(test[TARGET], proba)
    Path("work/metrics.json").write_text(json.dumps({"roc_auc": auc}))
elif stage == "register":
    import shutil
    Path("registry").mkdir(exist_ok=True)
    shutil.copy("work/model.joblib", "registry/maintenance.joblib")
"""


def dvc_yaml(python: str, example: Path) -> str:
    run = f"{python} stages.py {{}} {example}"
    stages = {
        "collect": (["data/incoming"], [], ["work/snapshot.parquet", "work/profile.json"]),
        "validate": (["work/snapshot.parquet", "work/profile.json"], ["tolerance"],
                     ["work/batch.parquet"]),
        "prepare": (["work/batch.parquet"], ["test_size", "seed"],
                    ["work/train.parquet", "work/test.parquet"]),
        "train": (["work/train.parquet"], ["n_estimators", "max_depth", "seed"],
                  ["work/model.joblib"]),
        "evaluate": (["work/model.joblib", "work/test.parquet"], [], ["work/metrics.json"]),
        "register": (["work/model.joblib", "work/metrics.json"], [],
                     ["registry/maintenance.joblib"]),
    }  # fmt: skip
    lines = ["stages:"]
    for name, (deps, params, outs) in stages.items():
        lines += [f"  {name}:", f"    cmd: {run.format(name)}", "    deps:"]
        lines += [f"      - {d}" for d in [*deps, "stages.py"]]
        if params:
            lines += ["    params:", *(f"      - {p}" for p in params)]
        lines += ["    outs:", *(f"      - {o}" for o in outs)]
    return "\n".join(lines) + "\n"


PARAMS = "n_estimators: {n}\nmax_depth: 8\nseed: 42\ntest_size: 0.25\ntolerance: 0.05\n"


def ensure_dvc() -> Path:
    dvc = DVC_VENV / "bin" / "dvc"
    if not dvc.exists():
        print(f"creating {DVC_VENV} (pip install dvc) ...", flush=True)
        subprocess.run([sys.executable, "-m", "venv", str(DVC_VENV)], check=True)
        pip = [str(DVC_VENV / "bin" / "pip"), "install", "--quiet"]
        subprocess.run([*pip, "dvc"], check=True)
    return dvc


CPU: dict[str, list[float]] = {"modelyard": [], "dvc": []}


def timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    """Wall time of the command; its CPU time (user + sys of it and the processes it waited
    for) is appended to ``CPU``, a figure the machine's load inflates far less."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    CPU["dvc" if "dvc" in Path(argv[0]).name else "modelyard"].append(cpu)
    return elapsed


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--rows", type=int, default=5000)
    args = parser.parse_args()
    dvc = ensure_dvc()
    sys.path.insert(0, str(EXAMPLE))
    from generate import generate

    modelyard = str(Path(sys.executable).parent / "modelyard")
    root = Path(tempfile.mkdtemp(prefix="modelyard-noop-"))
    # Both tools in the same environment, as a user's shell has it: bytecode is cached (a
    # sandbox's PYTHONDONTWRITEBYTECODE would make every command compile its imports again).
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("MODELYARD_") and k != "PYTHONDONTWRITEBYTECODE"
    }
    try:
        my, dv = root / "modelyard", root / "dvc"
        for folder in (my, dv):
            (folder / "data" / "incoming").mkdir(parents=True)
            generate(args.rows, seed=1).to_csv(
                folder / "data" / "incoming" / "batch-001.csv", index=False
            )
        shutil.copy(EXAMPLE / "pipeline.py", my / "pipeline.py")
        subprocess.run([modelyard, "init"], cwd=my, env=env, check=True, capture_output=True)
        my_run = [modelyard, "pipeline", "run", "pipeline.py", "-p", "n_estimators=60"]
        my_changed = [modelyard, "pipeline", "run", "pipeline.py", "-p", "n_estimators=61"]

        (dv / "stages.py").write_text(textwrap.dedent(STAGES))
        (dv / "dvc.yaml").write_text(dvc_yaml(sys.executable, EXAMPLE))
        (dv / "params.yaml").write_text(PARAMS.format(n=60))
        subprocess.run([str(dvc), "init", "--no-scm", "-q"], cwd=dv, check=True)
        subprocess.run([str(dvc), "config", "core.analytics", "false"], cwd=dv, check=True)
        dvc_run = [str(dvc), "repro"]

        cold = {"modelyard": timed(my_run, my, env), "dvc": timed(dvc_run, dv, env)}
        noop: dict[str, list[float]] = {"modelyard": [], "dvc": []}
        loads = [loadavg()]
        for tool in CPU.values():
            tool.clear()
        for _ in range(args.repeat):  # interleaved, so both see the same load
            noop["modelyard"].append(timed(my_run, my, env))
            noop["dvc"].append(timed(dvc_run, dv, env))
        noop_cpu = {tool: statistics.median(v) for tool, v in CPU.items()}
        loads.append(loadavg())
        (dv / "params.yaml").write_text(PARAMS.format(n=61))
        changed = {"modelyard": timed(my_changed, my, env), "dvc": timed(dvc_run, dv, env)}
        loads.append(loadavg())

        dvc_version = subprocess.run(
            [str(dvc), "--version"], capture_output=True, text=True
        ).stdout.strip()
        print(f"maintenance pipeline, {args.rows} rows; DVC {dvc_version}; load {loads}")
        print(f"{'':34}{'modelyard':>12}{'dvc repro':>12}{'ratio':>8}")
        m, d = statistics.median(noop["modelyard"]), statistics.median(noop["dvc"])
        rows = [
            ("first run (cold)", cold["modelyard"], cold["dvc"]),
            (f"no-op re-run (median of {args.repeat})", m, d),
            ("  its CPU time (user + sys)", noop_cpu["modelyard"], noop_cpu["dvc"]),
            ("n_estimators changed", changed["modelyard"], changed["dvc"]),
        ]
        for label, a, b in rows:
            print(f"{label:34}{a:11.2f}s{b:11.2f}s{a / b:7.2f}x")
        print("no-op runs, modelyard:", " ".join(f"{t:.2f}" for t in noop["modelyard"]))
        print("no-op runs, dvc      :", " ".join(f"{t:.2f}" for t in noop["dvc"]))
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
