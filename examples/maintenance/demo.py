"""``make demo``: the maintenance pipeline end to end in a throwaway workspace.

1. a first batch of sensor readings → collect, validate, prepare, train, evaluate, register;
2. the same again: everything but collect and register is cached;
3. a drifted batch (recalibrated sensor, new machine type): validation stops the run.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def sh(*args: str, cwd: Path, check: bool = True) -> int:
    print(f"\n$ modelyard {' '.join(args)}", flush=True)
    code = subprocess.call([str(Path(sys.executable).parent / "modelyard"), *args], cwd=cwd)
    if check and code != 0:
        sys.exit(code)
    return code


def main() -> None:
    from generate import generate

    root = Path(tempfile.mkdtemp(prefix="modelyard-demo-"))
    try:
        shutil.copy(HERE / "pipeline.py", root / "pipeline.py")
        incoming = root / "data" / "incoming"
        incoming.mkdir(parents=True)
        sh("init", cwd=root)
        generate(5000, seed=1).to_csv(incoming / "batch-001.csv", index=False)
        sh("pipeline", "run", "pipeline.py", "-p", "n_estimators=100", "--jobs", "2", cwd=root)
        sh("pipeline", "run", "pipeline.py", "-p", "n_estimators=100", cwd=root)
        generate(5000, seed=2, drift=True).to_csv(incoming / "batch-002.csv", index=False)
        code = sh("pipeline", "run", "pipeline.py", cwd=root, check=False)
        print(f"\n(the drifted batch was refused, exit code {code})")
        sh("pipeline", "runs", cwd=root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.path.insert(0, str(HERE))
    main()
