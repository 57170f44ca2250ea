"""Compile a pipeline to an Argo Workflows ``Workflow`` so a team can run it on Kubernetes.

One container template per step runs the same worker as the local runner, in its Argo mode:
``python -m modelyard.pipeline.worker --argo …``. Values still travel through the team's
artifact store and metadata store; what Argo passes between tasks is only the small JSON map
``{output: {digest, serializer}}`` each step writes as its ``outputs`` parameter. Pipeline
parameters become workflow parameters (``argo submit -p n_estimators=200``).

Cluster settings come from the ``[pipeline.argo]`` table of the workspace config: ``image``,
``workdir`` (where the image holds the project, default ``/workspace``), ``store_secret`` (a
Secret with the store URL under key ``url``), ``artifacts_claim`` (a PersistentVolumeClaim
mounted at ``/artifacts``), ``service_account``.
"""

from __future__ import annotations

import argparse
import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import ConfigError
from modelyard.pipeline.graph import Graph, build_graph
from modelyard.pipeline.loader import load_pipeline
from modelyard.pipeline.params import resolve_params

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

OUTPUTS_FILE = "/tmp/modelyard-outputs.json"
ARTIFACTS_MOUNT = "/artifacts"
DEFAULT_IMAGE = "modelyard-step:latest"


def compile_argo(
    path: Path,
    *,
    workspace: Workspace,
    image: str | None = None,
    params: Mapping[str, Any] | None = None,
    pipeline_name: str | None = None,
) -> dict[str, Any]:
    """The Workflow manifest as a plain dict (serialise it with :func:`to_yaml`)."""
    graph = build_graph(load_pipeline(path, pipeline_name))
    values = resolve_params(graph, params)
    cfg = _settings(workspace)
    image = image or str(cfg.get("image", DEFAULT_IMAGE))
    workdir = str(cfg.get("workdir", "/workspace"))
    try:
        rel = path.resolve().relative_to(workspace.root)
    except ValueError:
        raise ConfigError(f"{path} is outside the workspace {workspace.root}") from None
    pipeline_file = f"{workdir.rstrip('/')}/{rel.as_posix()}"
    name = graph.pipeline.name
    templates: list[dict[str, Any]] = [{"name": "pipeline", "dag": {"tasks": _tasks(graph)}}]
    for step in graph.order:
        templates.append(_step_template(graph, step, image, workdir, pipeline_file, cfg))
    spec: dict[str, Any] = {
        "entrypoint": "pipeline",
        "arguments": {
            "parameters": [
                {"name": p, "value": _param_text(values[p])} for p in sorted(graph.params)
            ]
        },
        "templates": templates,
    }
    if cfg.get("service_account"):
        spec["serviceAccountName"] = str(cfg["service_account"])
    if cfg.get("artifacts_claim"):
        spec["volumes"] = [
            {
                "name": "artifacts",
                "persistentVolumeClaim": {"claimName": str(cfg["artifacts_claim"])},
            }
        ]
    return {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "Workflow",
        "metadata": {
            "generateName": f"{_dns(name)}-",
            "labels": {
                "app.kubernetes.io/managed-by": "modelyard",
                "modelyard.dev/pipeline": _dns(name),
            },
        },
        "spec": spec,
    }


def to_yaml(manifest: Mapping[str, Any]) -> str:
    import yaml

    return str(yaml.safe_dump(dict(manifest), sort_keys=False, default_flow_style=False))


def _tasks(graph: Graph) -> list[dict[str, Any]]:
    tasks = []
    for step in graph.order:
        node = graph.nodes[step]
        upstream = sorted(node.upstream, key=graph.order.index)
        task: dict[str, Any] = {"name": _dns(step), "template": f"step-{_dns(step)}"}
        if upstream:
            task["dependencies"] = [_dns(u) for u in upstream]
            task["arguments"] = {
                "parameters": [
                    {
                        "name": f"upstream-{_dns(u)}",
                        "value": f"{{{{tasks.{_dns(u)}.outputs.parameters.outputs}}}}",
                    }
                    for u in upstream
                ]
            }
        tasks.append(task)
    return tasks


def _step_template(
    graph: Graph,
    step: str,
    image: str,
    workdir: str,
    pipeline_file: str,
    cfg: Mapping[str, Any],
) -> dict[str, Any]:
    node = graph.nodes[step]
    spec = node.spec
    upstream = sorted(node.upstream, key=graph.order.index)
    args = ["--argo", "--pipeline-file", pipeline_file, "--pipeline", graph.pipeline.name]
    args += ["--step", step, "--outputs-file", OUTPUTS_FILE]
    for p in node.params:
        args += ["--param", f"{p}={{{{workflow.parameters.{p}}}}}"]
    for u in upstream:
        args += ["--upstream", f"{{{{inputs.parameters.upstream-{_dns(u)}}}}}"]
    env: list[dict[str, Any]] = [{"name": "MODELYARD_WORKSPACE", "value": workdir}]
    if cfg.get("store_secret"):
        env.append(
            {
                "name": "MODELYARD_STORE_URL",
                "valueFrom": {"secretKeyRef": {"name": str(cfg["store_secret"]), "key": "url"}},
            }
        )
    container: dict[str, Any] = {
        "image": image,
        "command": ["python", "-m", "modelyard.pipeline.worker"],
        "args": args,
        "workingDir": workdir,
        "env": env,
    }
    if cfg.get("artifacts_claim"):
        env.append({"name": "MODELYARD_ARTIFACT_ROOT", "value": ARTIFACTS_MOUNT})
        container["volumeMounts"] = [{"name": "artifacts", "mountPath": ARTIFACTS_MOUNT}]
    template: dict[str, Any] = {"name": f"step-{_dns(step)}", "container": container}
    if upstream:
        template["inputs"] = {"parameters": [{"name": f"upstream-{_dns(u)}"} for u in upstream]}
    template["outputs"] = {"parameters": [{"name": "outputs", "valueFrom": {"path": OUTPUTS_FILE}}]}
    if spec.retries:
        template["retryStrategy"] = {
            "limit": str(spec.retries),
            "retryPolicy": "Always",
            "backoff": {"duration": f"{spec.retry_delay:g}s", "factor": "2"},
        }
    if spec.timeout:
        template["activeDeadlineSeconds"] = int(spec.timeout + 0.999)
    return template


def run_argo_step(argv: Sequence[str]) -> int:
    """The worker's ``--argo`` mode: build the task from arguments and the environment instead
    of a task file, run the step as a tracked run, write ``{output: {digest, serializer}}``."""
    import sys
    import tempfile

    from modelyard.pipeline.worker import execute_task
    from modelyard.tracking import start_run
    from modelyard.workspace import Workspace

    parser = argparse.ArgumentParser(prog="modelyard.pipeline.worker --argo")
    parser.add_argument("--argo", action="store_true")
    parser.add_argument("--pipeline-file", required=True)
    parser.add_argument("--pipeline")
    parser.add_argument("--step", required=True)
    parser.add_argument("--outputs-file", required=True)
    parser.add_argument("--param", action="append", default=[])
    parser.add_argument("--upstream", action="append", default=[])
    ns = parser.parse_args(list(argv))

    from modelyard.pipeline.params import parse_assignments

    graph = build_graph(load_pipeline(Path(ns.pipeline_file), ns.pipeline))
    node = graph.nodes[ns.step]
    params = resolve_params(graph, parse_assignments(ns.param))
    available: dict[str, Any] = {}
    for doc in ns.upstream:
        available.update(json.loads(doc))
    inputs = {arg: available[arg] for arg in node.inputs}
    ws = Workspace.find()
    from modelyard.pipeline.serializers import dump
    from modelyard.tracking import resolve_dataset_version

    for arg, ref in node.datasets.items():
        version = resolve_dataset_version(ws, ref)
        inputs[arg] = dump(
            version, step=ns.step, output=arg, artifacts=ws.artifacts, allow_pickle=False
        ).to_json()
    scratch = Path(tempfile.mkdtemp(prefix="modelyard-step-"))
    with start_run(ns.step, pipeline=graph.pipeline.name, workspace=ws) as run:
        task = {
            "workspace_root": str(ws.root),
            "store_url": ws.settings.store_url,
            "artifact_root": str(ws.settings.artifact_root),
            "pipeline_file": ns.pipeline_file,
            "pipeline": graph.pipeline.name,
            "step": ns.step,
            "params": {p: params[p] for p in node.params},
            "inputs": inputs,
            "run_id": run.id,
            "scratch_dir": str(scratch),
            "result_path": str(scratch / "result.json"),
        }
        result = execute_task(task)
        if "error" in result:
            err = result["error"]
            print(err["traceback"], file=sys.stderr)
            run.end("failed", f"{err['type']}: {err['message']}")
            return 1
        for value in result["outputs"].values():
            ws.store.lineage.add("run", run.id, "artifact", value["digest"], "output")
    Path(ns.outputs_file).write_text(json.dumps(result["outputs"]), encoding="utf-8")
    return 0


def _settings(workspace: Workspace) -> Mapping[str, Any]:
    section = workspace.settings.section("pipeline")
    argo = section.get("argo", {})
    if not isinstance(argo, Mapping):
        raise ConfigError("[pipeline.argo] in the workspace config must be a table")
    return argo


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _dns(name: str) -> str:
    """A DNS-1123 label: Argo task and template names must be one."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return label[:63] or "step"
