"""The process a reproduction runs in: ``python -m modelyard.reproduce.child SPEC_JSON``.

Started by :func:`modelyard.reproduce.reproduce` with the chosen interpreter (a fresh venv or
the current one) and the checked-out code as working folder. It makes the workspace and a
:class:`~modelyard.tracking.replay.Replay` current, re-runs the pipeline step
(:func:`~modelyard.pipeline.replay_pipeline`) or the script (``runpy``, as ``python
script.py ARGS`` or ``python -m module ARGS`` would), and writes what it started to the
spec's ``result_path``::

    {"runs": ["<run id>", …], "pipeline_run": "<id>" | null, "target_run": "<id>" | null,
     "error": "<type: message>" | null}

Exit status: 0 when the result file was written, 2 when the spec is unusable.
"""

from __future__ import annotations

import json
import os
import runpy
import sys
import traceback
from pathlib import Path
from typing import Any

SPEC_FORMAT = 1


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m modelyard.reproduce.child SPEC_JSON", file=sys.stderr)
        return 2
    try:
        spec = json.loads(Path(args[0]).read_text(encoding="utf-8"))
        if spec.get("format") != SPEC_FORMAT:
            raise ValueError(f"unknown spec format {spec.get('format')!r}")
    except (OSError, ValueError) as exc:
        print(f"modelyard reproduce: {exc}", file=sys.stderr)
        return 2
    result = run_spec(spec)
    tmp = Path(spec["result_path"] + ".tmp")
    tmp.write_text(json.dumps(result), encoding="utf-8")
    tmp.replace(spec["result_path"])
    return 0


def run_spec(spec: dict[str, Any]) -> dict[str, Any]:
    from modelyard.tracking.replay import Replay, replaying
    from modelyard.workspace import Workspace

    replay = Replay(
        of_run=spec["of_run"], code_folder=Path(spec["code_folder"]), datasets=spec["datasets"]
    )
    result: dict[str, Any] = {"runs": replay.started, "pipeline_run": None, "target_run": None}
    error = None
    ws = Workspace.at(Path(spec["workspace_root"]))
    # For the processes the re-run starts (pipeline workers, a script's subprocesses).
    os.environ["MODELYARD_WORKSPACE"] = str(ws.root)
    try:
        with ws, ws.use(), replaying(replay):
            if spec["kind"] == "pipeline":
                result.update(_pipeline(spec, ws))
                error = result.pop("error")
            else:
                error = _script(spec)
    except BaseException as exc:
        error = f"{type(exc).__name__}: {exc}"
        traceback.print_exc()
    result["error"] = error
    return result


def _pipeline(spec: dict[str, Any], ws: Any) -> dict[str, Any]:
    from modelyard.pipeline import replay_pipeline

    run = replay_pipeline(
        spec["pipeline_run"],
        spec["step"],
        path=Path(spec["pipeline_file"]),
        params=spec["params"],
        workspace=ws,
    )
    return {
        "pipeline_run": run.id,
        "target_run": run.step(spec["step"]).run_id,
        "error": run.error,
    }


def _script(spec: dict[str, Any]) -> str | None:
    os.chdir(spec["cwd"])
    try:
        if spec.get("module"):
            sys.argv = [spec["module"], *spec["args"]]
            sys.path.insert(0, spec["cwd"])
            runpy.run_module(spec["module"], run_name="__main__", alter_sys=True)
        else:
            script = spec["script"]
            sys.argv = [script, *spec["args"]]
            sys.path.insert(0, str(Path(script).parent))
            runpy.run_path(script, run_name="__main__")
    except SystemExit as exc:
        if exc.code not in (None, 0):
            return f"the script exited with status {exc.code}"
    return None


if __name__ == "__main__":
    sys.exit(main())
