"""Compile a pipeline to a Kubeflow Pipelines (KFP v2) pipeline spec with the kfp SDK's compiler.

The graph is modelyard's (built and checked as for every runner); the spec is kfp's own: each
step becomes a container component (``@dsl.container_component``) whose container runs the
worker in its Kubeflow mode, ``python -m modelyard.pipeline.worker --kfp …``, and the pipeline
function wires them as the graph says, so ``kfp.compiler.Compiler`` writes the IR YAML that
``kfp`` clients upload and ``kfp.local`` runs. Nothing here writes pipeline-spec fields by hand.

The shape mirrors the Argo compile (:mod:`modelyard.pipeline.argo`): a first task,
``modelyard-start``, opens the pipeline run; every step waits for it (directly or through its
upstream steps) and passes downstream only ``{output: {digest, serializer}}`` as its ``outputs``
parameter (the values go through the team's artifact store); an exit handler,
``modelyard-finish``, gets KFP's ``PipelineTaskFinalStatus`` and closes the run. KFP's own
caching is off for every task: a task KFP skipped would leave no record in modelyard (modelyard
steps are cached by modelyard's rules on the local and docker runners).

Settings come from ``[pipeline.kubeflow]`` (see :mod:`modelyard.pipeline.cluster`): the store
Secret and the artifact claim become ``kfp-kubernetes`` platform settings (``use_secret_as_env``,
``mount_pvc``), a step's ``timeout`` its pod's ``activeDeadlineSeconds`` and its ``retries`` a
KFP retry policy. The service account is not part of a KFP pipeline spec: give it when creating
the run. Needs ``pip install 'modelyard[kubeflow]'`` (kfp and kfp-kubernetes).
"""

from __future__ import annotations

import importlib
import inspect
import math
import re
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import ConfigError
from modelyard.pipeline.cluster import ARTIFACTS_MOUNT, ClusterSettings
from modelyard.pipeline.graph import Graph, build_graph
from modelyard.pipeline.loader import load_pipeline
from modelyard.pipeline.params import resolve_params
from modelyard.pipeline.runners.base import WORKER_MODULE
from modelyard.pipeline.step_images import compiled_images

if TYPE_CHECKING:
    from modelyard.workspace import Workspace

DEFAULT_IMAGE = "modelyard-step:latest"
START = "modelyard-start"
FINISH = "modelyard-finish"
OUTPUTS = "outputs"  # every step component's one output parameter
_JOB_UUID = "job_uuid"
_JOB_NAME = "job_name"
_STATUS = "status"
_COMMAND = ["python", "-m", WORKER_MODULE]


def compile_kubeflow(
    path: Path,
    *,
    workspace: Workspace,
    image: str | None = None,
    params: Mapping[str, Any] | None = None,
    pipeline_name: str | None = None,
    allow_local_state: bool = False,
) -> str:
    """The KFP pipeline spec (IR YAML, as ``kfp.compiler.Compiler`` writes it); ``image`` is
    the default step image (else ``[pipeline.kubeflow] image``)."""
    graph = build_graph(load_pipeline(path, pipeline_name))
    values = resolve_params(graph, params)
    cfg = ClusterSettings.of(workspace, "kubeflow")
    if not allow_local_state:
        cfg.require_shared_state()
    kfp = _kfp()
    default_image = image or cfg.image or DEFAULT_IMAGE
    images = compiled_images(workspace, graph, default_image, path)
    builder = _Builder(kfp, graph, cfg, cfg.pipeline_file(path, workspace), default_image, images)
    pipeline = builder.pipeline(values)
    with tempfile.TemporaryDirectory(prefix="modelyard-kfp-") as tmp:
        out = Path(tmp) / "pipeline.yaml"
        kfp.compiler.Compiler().compile(pipeline_func=pipeline, package_path=str(out))
        return out.read_text(encoding="utf-8")


class _Kfp:
    """The kfp modules this compiler uses, imported once (they are an optional extra)."""

    def __init__(self) -> None:
        try:
            self.dsl: Any = importlib.import_module("kfp.dsl")
            self.compiler: Any = importlib.import_module("kfp.compiler")
            self.kubernetes: Any = importlib.import_module("kfp.kubernetes")
        except ImportError as exc:
            raise ConfigError(
                f"compiling for Kubeflow needs the kfp SDK ({exc.name} is missing): "
                "pip install 'modelyard[kubeflow]' (kfp pins kubernetes<31, so use an "
                "environment without modelyard[kubernetes])"
            ) from None


def _kfp() -> _Kfp:
    return _Kfp()


class _Builder:
    def __init__(
        self,
        kfp: _Kfp,
        graph: Graph,
        cfg: ClusterSettings,
        pipeline_file: str,
        default_image: str,
        images: Mapping[str, str],
    ) -> None:
        self.kfp = kfp
        self.graph = graph
        self.cfg = cfg
        self.pipeline_file = pipeline_file
        self.default_image = default_image
        self.images = images
        self.common = ["--pipeline-file", pipeline_file, "--pipeline", graph.pipeline.name]

    # -- components ------------------------------------------------------------------------------
    def _component(
        self,
        name: str,
        image: str,
        inputs: Sequence[tuple[str, Any]],
        args: Callable[[Mapping[str, Any]], list[Any]],
        *,
        outputs: bool = True,
        final_status: bool = False,
    ) -> Any:
        """A container component whose inputs are ``inputs`` (plus the job's id and name, the
        final status for the exit task, and the ``outputs`` parameter of a step)."""
        dsl = self.kfp.dsl
        kinds = [(_JOB_UUID, str), (_JOB_NAME, str), *inputs]
        if final_status:
            kinds.append((_STATUS, dsl.PipelineTaskFinalStatus))
        if outputs:
            kinds.append((OUTPUTS, dsl.OutputPath(str)))
        positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
        signature = inspect.Signature(
            [inspect.Parameter(n, positional, annotation=t) for n, t in kinds]
        )
        common = self.common

        def container(*placeholders: Any) -> Any:
            bound = dict(zip([n for n, _ in kinds], placeholders, strict=True))
            job = ["--job-uuid", bound[_JOB_UUID], "--job-name", bound[_JOB_NAME]]
            full = [*args(bound), *common, *job]
            return dsl.ContainerSpec(image=image, command=_COMMAND, args=full)

        container.__signature__ = signature  # type: ignore[attr-defined]
        container.__name__ = container.__qualname__ = name
        container.__doc__ = f"modelyard: {name}"
        return dsl.container_component(container)

    def _param_args(self, names: Sequence[str], bound: Mapping[str, Any]) -> list[Any]:
        out: list[Any] = []
        for p in names:
            out += ["--param", self.kfp.dsl.ConcatPlaceholder([f"{p}=", bound[_param(p)]])]
        return out

    def _step_component(self, step: str) -> Any:
        node = self.graph.nodes[step]
        upstream = self._upstream(step)
        inputs = [(_param(p), self.graph.params[p].type) for p in node.params]
        inputs += [(f"upstream_{i}", str) for i in range(len(upstream))]

        def args(bound: Mapping[str, Any]) -> list[Any]:
            out: list[Any] = ["--kfp", "--step", step, "--outputs-file", bound[OUTPUTS]]
            out += self._param_args(node.params, bound)
            for i in range(len(upstream)):
                out += ["--upstream", bound[f"upstream_{i}"]]
            return out

        return self._component(step, self.images[step], inputs, args)

    def _upstream(self, step: str) -> list[str]:
        return sorted(self.graph.nodes[step].upstream, key=self.graph.order.index)

    # -- the pipeline ------------------------------------------------------------------------------
    def pipeline(self, values: Mapping[str, Any]) -> Any:
        dsl = self.kfp.dsl
        graph = self.graph
        names = sorted(graph.params)
        start = self._component(
            START,
            self.default_image,
            [(_param(p), graph.params[p].type) for p in names],
            lambda bound: ["--kfp-start", *self._param_args(names, bound)],
            outputs=False,
        )
        finish = self._component(
            FINISH,
            self.default_image,
            [],
            lambda bound: ["--kfp-finish", "--status", bound[_STATUS]],
            outputs=False,
            final_status=True,
        )
        steps = {s: self._step_component(s) for s in graph.order}

        def body(*args: Any) -> None:
            given = dict(zip(names, args, strict=True))
            job = {
                _JOB_UUID: dsl.PIPELINE_JOB_ID_PLACEHOLDER,
                _JOB_NAME: dsl.PIPELINE_JOB_NAME_PLACEHOLDER,
            }
            exit_task = self._configure(finish(**job), None)
            with dsl.ExitHandler(exit_task, name="modelyard-steps"):
                start_task = start(**job, **{_param(p): given[p] for p in names})
                self._configure(start_task, None)
                tasks: dict[str, Any] = {}
                for step in graph.order:
                    node = graph.nodes[step]
                    upstream = self._upstream(step)
                    kwargs = {_param(p): given[p] for p in node.params}
                    kwargs.update(
                        {f"upstream_{i}": tasks[u].outputs[OUTPUTS] for i, u in enumerate(upstream)}
                    )
                    task = steps[step](**job, **kwargs)
                    if not upstream:
                        task.after(start_task)
                    task.set_display_name(step)
                    tasks[step] = self._configure(task, step)

        positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
        body.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter(p, positional, annotation=graph.params[p].type, default=values[p])
                for p in names
            ]
        )
        body.__name__ = body.__qualname__ = _dns(graph.pipeline.name)
        return dsl.pipeline(name=_dns(graph.pipeline.name), description=_description(graph))(body)

    def _configure(self, task: Any, step: str | None) -> Any:
        """Caching off, the shared-state settings, and a step's retries and timeout."""
        k8s = self.kfp.kubernetes
        task.set_caching_options(False)
        for name, value in self.cfg.environment().items():
            task.set_env_variable(name, value)
        if self.cfg.store_secret:
            k8s.use_secret_as_env(
                task,
                secret_name=self.cfg.store_secret,
                secret_key_to_env={"url": "MODELYARD_STORE_URL"},
            )
        if self.cfg.artifacts_claim:
            k8s.mount_pvc(task, pvc_name=self.cfg.artifacts_claim, mount_path=ARTIFACTS_MOUNT)
        if step is not None:
            spec = self.graph.nodes[step].spec
            if spec.retries:
                task.set_retry(  # KFP takes whole seconds
                    num_retries=spec.retries,
                    backoff_duration=f"{max(1, math.ceil(spec.retry_delay))}s",
                    backoff_factor=2,
                )
            if spec.timeout:
                k8s.set_timeout(task, int(spec.timeout + 0.999))
        return task


def _param(name: str) -> str:
    """A pipeline parameter's input name in a component (never one of the fixed inputs)."""
    return f"param_{name}"


def _description(graph: Graph) -> str:
    return graph.pipeline.description or f"modelyard pipeline {graph.pipeline.name}"


def _dns(name: str) -> str:
    """KFP pipeline names: lowercase letters, digits and dashes."""
    label = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")
    return label[:63] or "pipeline"
