"""The worker's Kubeflow modes: what runs inside the pods of a compiled KFP pipeline.

``--kfp-start`` (the first task) opens the pipeline run, ``--kfp`` runs one step as a child run
of it, ``--kfp-finish`` (the exit handler, given KFP's ``PipelineTaskFinalStatus``) settles it.
They share their bookkeeping with the Argo modes (:mod:`modelyard.pipeline.argo_run`), so a
KFP run is a pipeline run like any other (runner ``kubeflow``).

Every pod derives the pipeline run's id from the job itself: on a KFP cluster
``{{$.pipeline_job_uuid}}`` is the run's UUID, and its 32 hex digits are the id (``modelyard
pipeline show`` takes the id KFP shows). ``kfp.local`` hands out a random number instead, so
there the id is a digest of the job's name and that number: the same in every task of the run.

KFP retries a failed task (``set_retry``) without telling the container which attempt it is, so
a step's failure is final once the attempts recorded in its row exceed its ``retries``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelyard.errors import ConfigError
from modelyard.pipeline.argo_run import (
    ancestors_of,
    open_pipeline_run,
    run_step_pod,
    settle_pipeline_run,
    step_arguments,
)
from modelyard.pipeline.graph import build_graph
from modelyard.pipeline.loader import load_pipeline
from modelyard.pipeline.params import parse_assignments, resolve_params

RUNNER = "kubeflow"
KFP_SUCCEEDED = "SUCCEEDED"
_UUID = re.compile(r"^[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}\Z")


def kfp_run_id(job_uuid: str, job_name: str) -> str:
    """The pipeline run's id for a KFP job: its UUID as 32 hex digits, or (``kfp.local``, whose
    job id is a random number) a digest of the job's name and id."""
    text = job_uuid.strip().lower()
    if _UUID.match(text):
        return text.replace("-", "")
    if not text or not job_name.strip() or text.startswith("{{"):
        raise ConfigError(
            f"--job-uuid {job_uuid!r} / --job-name {job_name!r}: not a KFP job's id and name "
            "(run the compiled pipeline on Kubeflow Pipelines or with kfp.local)"
        )
    return hashlib.sha256(f"kfp\0{job_name}\0{text}".encode()).hexdigest()[:32]


def _parser(mode: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=f"python -m modelyard.pipeline.worker {mode}")
    parser.add_argument(mode, action="store_true")
    parser.add_argument("--pipeline-file", required=True)
    parser.add_argument("--pipeline")
    parser.add_argument("--job-uuid", required=True, help="{{$.pipeline_job_uuid}}")
    parser.add_argument("--job-name", required=True, help="{{$.pipeline_job_name}}")
    return parser


def run_kfp_start(argv: Sequence[str]) -> int:
    """``--kfp-start``: the pipeline's tracked run and its record, one pending row per step."""
    from modelyard.workspace import Workspace

    parser = _parser("--kfp-start")
    parser.add_argument("--param", action="append", default=[])
    ns = parser.parse_args(list(argv))
    run_id = kfp_run_id(ns.job_uuid, ns.job_name)
    graph = build_graph(load_pipeline(Path(ns.pipeline_file), ns.pipeline))
    params = resolve_params(graph, parse_assignments(ns.param))
    ws = Workspace.find()
    try:
        tags = {"modelyard.kubeflow.job": ns.job_name}
        open_pipeline_run(ws, run_id, graph, params, ns.pipeline_file, runner=RUNNER, tags=tags)
    finally:
        ws.close()
    print(f"pipeline run {run_id} ({graph.pipeline.name}) started")
    return 0


def run_kfp_step(argv: Sequence[str]) -> int:
    """``--kfp``: run one step as a child run of the pipeline run and write
    ``{output: {digest, serializer}}`` to the output parameter file KFP passes downstream."""
    from modelyard.workspace import Workspace

    parser = _parser("--kfp")
    parser.add_argument("--step", required=True)
    parser.add_argument("--outputs-file", required=True)
    parser.add_argument("--param", action="append", default=[])
    parser.add_argument("--upstream", action="append", default=[])
    ns = parser.parse_args(list(argv))
    run_id = kfp_run_id(ns.job_uuid, ns.job_name)
    graph, params, upstream = step_arguments(ns)
    ws = Workspace.find()
    # KFP's container spec has no working directory: the step's relative paths mean the
    # workspace, as they do in the local runner and in Argo (workingDir).
    os.chdir(ws.root)
    # KFP does not say which attempt this is: the step's row counts them
    return run_step_pod(ws, graph, ns, run_id, params, upstream, final=None)


def run_kfp_finish(argv: Sequence[str]) -> int:
    """``--kfp-finish`` (the exit handler): settle the steps KFP left unsettled and end the
    pipeline run with the status KFP hands the exit task."""
    from modelyard.workspace import Workspace

    parser = _parser("--kfp-finish")
    parser.add_argument("--status", required=True, help="the PipelineTaskFinalStatus (JSON)")
    ns = parser.parse_args(list(argv))
    run_id = kfp_run_id(ns.job_uuid, ns.job_name)
    state, message = final_status(ns.status)
    ended = f"the Kubeflow run ended {state}"
    ws = Workspace.find()
    try:
        status, error = settle_pipeline_run(
            ws,
            run_id,
            succeeded=state == KFP_SUCCEEDED,
            ended=ended,
            platform_message=message,
            step_message=lambda _step: None,
            ancestors=ancestors_of(ns.pipeline_file, ns.pipeline),
        )
    finally:
        ws.close()
    print(f"pipeline run {run_id} {status}" + (f": {error}" if error else ""))
    return 0


def final_status(text: str) -> tuple[str, str | None]:
    """``(state, error message)`` from KFP's ``PipelineTaskFinalStatus`` as the exit task gets
    it: a JSON object with ``state`` and ``error.message`` (anything else reads as FAILED)."""
    try:
        doc: Any = json.loads(text)
    except ValueError:
        return "FAILED", f"unreadable final status {text[:200]!r}"
    if not isinstance(doc, Mapping):
        return "FAILED", f"unreadable final status {text[:200]!r}"
    state = str(doc.get("state") or "FAILED").upper()
    error = doc.get("error")
    message = error.get("message") if isinstance(error, Mapping) else None
    return state, (str(message) if message else None)
