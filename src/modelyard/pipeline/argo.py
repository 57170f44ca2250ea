"""Compile a pipeline to an Argo Workflows ``Workflow`` so a team can run it on Kubernetes.

One container template per step runs the same worker as the local runner, in its Argo mode:
``python -m modelyard.pipeline.worker --argo …``. Values still travel through the team's
artifact store and metadata store; what Argo passes between tasks is only the small JSON map
``{output: {digest, serializer}}`` each step writes as its ``outputs`` parameter. Pipeline
parameters become workflow parameters (``argo submit -p n_estimators=200``).

A workflow is one pipeline run, recorded as the local runner records one (runner ``argo``): a
first task, ``modelyard-start`` (``--argo-start``), creates the pipeline's tracked run and its
pipeline run record; every step depends on it and becomes a child run of it; the workflow's
exit handler, ``modelyard-finish`` (``--argo-finish``), ends both with ``{{workflow.status}}``.
The pipeline run's id is the workflow's uid without its dashes, so every pod derives it from
``{{workflow.uid}}``: nothing has to pass it along, the exit handler knows it even when the
first task failed, and a retried first pod finds the run it already started. The worker side
of these modes is :mod:`modelyard.pipeline.argo_run`.

Cluster settings come from the ``[pipeline.argo]`` table of the workspace config (see
:mod:`modelyard.pipeline.cluster`): without a shared store and a shared artifact location every
pod would record into its own empty SQLite file and folder, so compiling refuses and names the
settings to add, unless ``allow_local_state`` says that is meant (a one-node trial).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import PipelineDefinitionError
from modelyard.pipeline.cluster import ARTIFACTS_MOUNT, ClusterSettings
from modelyard.pipeline.graph import Graph, build_graph
from modelyard.pipeline.loader import load_pipeline
from modelyard.pipeline.params import resolve_params
from modelyard.pipeline.step_images import compiled_images

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

OUTPUTS_FILE = "/tmp/modelyard-outputs.json"
DEFAULT_IMAGE = "modelyard-step:latest"
START = "modelyard-start"  # the first task and its template
FINISH = "modelyard-finish"  # the exit handler's template
RUN_ID = "{{workflow.uid}}"


def compile_argo(
    path: Path,
    *,
    workspace: Workspace,
    image: str | None = None,
    params: Mapping[str, Any] | None = None,
    pipeline_name: str | None = None,
    allow_local_state: bool = False,
) -> dict[str, Any]:
    """The Workflow manifest as a plain dict (serialise it with :func:`to_yaml`)."""
    graph = build_graph(load_pipeline(path, pipeline_name))
    _check_task_names(graph)
    values = resolve_params(graph, params)
    cfg = ClusterSettings.of(workspace, "argo")
    if not allow_local_state:
        cfg.require_shared_state()
    image = image or cfg.image or DEFAULT_IMAGE
    images = compiled_images(workspace, graph, image, path)
    workdir = cfg.workdir
    pipeline_file = cfg.pipeline_file(path, workspace)
    name = graph.pipeline.name
    common = ["--pipeline-file", pipeline_file, "--pipeline", name, "--pipeline-run", RUN_ID]
    start_args = ["--argo-start", *common, "--workflow", "{{workflow.name}}"]
    for p in sorted(graph.params):
        start_args += ["--param", f"{p}={{{{workflow.parameters.{p}}}}}"]
    finish_args = ["--argo-finish", *common, "--status", "{{workflow.status}}"]
    finish_args += ["--failures", "{{workflow.failures}}"]
    tasks = [{"name": START, "template": START}, *_tasks(graph)]
    templates: list[dict[str, Any]] = [
        {"name": "pipeline", "dag": {"tasks": tasks}},
        {"name": START, "container": _container(start_args, image, workdir, cfg)},
        {"name": FINISH, "container": _container(finish_args, image, workdir, cfg)},
    ]
    for step in graph.order:
        templates.append(_step_template(graph, step, images[step], workdir, pipeline_file, cfg))
    spec: dict[str, Any] = {
        "entrypoint": "pipeline",
        "onExit": FINISH,
        "arguments": {
            "parameters": [
                {"name": p, "value": _param_text(values[p])} for p in sorted(graph.params)
            ]
        },
        "templates": templates,
    }
    if cfg.service_account:
        spec["serviceAccountName"] = cfg.service_account
    if cfg.artifacts_claim:
        spec["volumes"] = [
            {"name": "artifacts", "persistentVolumeClaim": {"claimName": cfg.artifacts_claim}}
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


def step_template_name(step: str) -> str:
    """The template a step runs as (the exit handler maps Argo's failures back by it)."""
    return f"step-{_dns(step)}"


def _check_task_names(graph: Graph) -> None:
    """Task names are DNS labels made from step names: two steps, or a step and the start
    task, must not end up with the same one."""
    seen = {START: "(modelyard's start task)"}
    for step in graph.order:
        label = _dns(step)
        if label in seen:
            raise PipelineDefinitionError(
                f"steps {seen[label]} and {step!r} both become the Argo task {label!r}; "
                "rename one of them"
            )
        seen[label] = repr(step)


def _tasks(graph: Graph) -> list[dict[str, Any]]:
    tasks = []
    for step in graph.order:
        node = graph.nodes[step]
        upstream = sorted(node.upstream, key=graph.order.index)
        task: dict[str, Any] = {"name": _dns(step), "template": step_template_name(step)}
        # Steps without upstream steps wait for the start task; the rest wait for it through
        # their upstream steps.
        task["dependencies"] = [_dns(u) for u in upstream] or [START]
        if upstream:
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


def _container(args: list[str], image: str, workdir: str, cfg: ClusterSettings) -> dict[str, Any]:
    env: list[dict[str, Any]] = [{"name": "MODELYARD_WORKSPACE", "value": workdir}]
    if cfg.store_secret:
        env.append(
            {
                "name": "MODELYARD_STORE_URL",
                "valueFrom": {"secretKeyRef": {"name": cfg.store_secret, "key": "url"}},
            }
        )
    env += [
        {"name": k, "value": v} for k, v in cfg.environment().items() if k != "MODELYARD_WORKSPACE"
    ]
    container: dict[str, Any] = {
        "image": image,
        "command": ["python", "-m", "modelyard.pipeline.worker"],
        "args": args,
        "workingDir": workdir,
        "env": env,
    }
    if cfg.artifacts_claim:
        container["volumeMounts"] = [{"name": "artifacts", "mountPath": ARTIFACTS_MOUNT}]
    return container


def _step_template(
    graph: Graph,
    step: str,
    image: str,
    workdir: str,
    pipeline_file: str,
    cfg: ClusterSettings,
) -> dict[str, Any]:
    node = graph.nodes[step]
    spec = node.spec
    upstream = sorted(node.upstream, key=graph.order.index)
    args = ["--argo", "--pipeline-file", pipeline_file, "--pipeline", graph.pipeline.name]
    args += ["--step", step, "--outputs-file", OUTPUTS_FILE, "--pipeline-run", RUN_ID]
    if spec.retries:
        # Argo's retry number (0 first): the worker knows whether Argo will try again.
        args += ["--retry", "{{retries}}"]
    for p in node.params:
        args += ["--param", f"{p}={{{{workflow.parameters.{p}}}}}"]
    for u in upstream:
        args += ["--upstream", f"{{{{inputs.parameters.upstream-{_dns(u)}}}}}"]
    container = _container(args, image, workdir, cfg)
    template: dict[str, Any] = {"name": step_template_name(step), "container": container}
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


def _param_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _dns(name: str) -> str:
    """A DNS-1123 label: Argo task and template names must be one."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return label[:63] or "step"
