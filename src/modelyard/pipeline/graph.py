"""The static graph of a pipeline, built and checked before anything runs.

The wiring rule, for each argument of a step function:

1. its name is an output of another step  -> it receives that output (an edge in the DAG);
2. its default is ``dataset("name@…")``   -> it receives that dataset version;
3. it has any other default              -> it is a pipeline parameter (``-p name=value``);
4. otherwise                             -> error: a missing input.

A step's outputs are named by ``@step(outputs=…)``, by default after the step itself. Each
check below is one small function raising :class:`PipelineDefinitionError` with the
``file:line`` of the definition at fault, as a compiler would.
"""

from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from modelyard.errors import PipelineDefinitionError
from modelyard.pipeline.step import DatasetInput, Pipeline, StepSpec, spec_of

PARAM_TYPES: tuple[type, ...] = (bool, int, float, str)


@dataclass(frozen=True)
class ParamSpec:
    name: str
    type: type
    default: Any
    where: str  # file:line of the first step declaring it


@dataclass(frozen=True)
class StepNode:
    spec: StepSpec
    inputs: Mapping[str, str]  # argument -> producing step
    datasets: Mapping[str, str]  # argument -> dataset reference
    params: tuple[str, ...]  # arguments that are pipeline parameters

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def upstream(self) -> frozenset[str]:
        return frozenset(self.inputs.values())


@dataclass(frozen=True)
class Graph:
    pipeline: Pipeline
    nodes: Mapping[str, StepNode]
    order: tuple[str, ...]  # a topological order
    params: Mapping[str, ParamSpec]

    def downstream(self, name: str) -> set[str]:
        """Every step that depends on ``name``, directly or not."""
        out: set[str] = set()
        frontier = [name]
        while frontier:
            current = frontier.pop()
            for node in self.nodes.values():
                if current in node.upstream and node.name not in out:
                    out.add(node.name)
                    frontier.append(node.name)
        return out


def build_graph(pipeline: Pipeline) -> Graph:
    specs = check_steps_are_declared(pipeline)
    check_unique_step_names(pipeline, specs)
    producers = check_unique_outputs(specs)
    check_signatures(specs)
    nodes: dict[str, StepNode] = {}
    params: dict[str, ParamSpec] = {}
    for spec in specs:
        nodes[spec.name] = resolve_arguments(spec, producers, params)
    order = check_acyclic(nodes)
    return Graph(pipeline=pipeline, nodes=nodes, order=order, params=params)


def check_steps_are_declared(pipeline: Pipeline) -> list[StepSpec]:
    if not pipeline.steps:
        raise PipelineDefinitionError(
            f"{pipeline.defined_at}: pipeline {pipeline.name!r} has no steps"
        )
    specs = []
    for obj in pipeline.steps:
        spec = spec_of(obj)
        if spec is None:
            raise PipelineDefinitionError(
                f"{_where_of(obj)}: {getattr(obj, '__name__', obj)!r} in pipeline "
                f"{pipeline.name!r} is not a step; decorate it with @step"
            )
        specs.append(spec)
    return specs


def check_unique_step_names(pipeline: Pipeline, specs: list[StepSpec]) -> None:
    seen: dict[str, StepSpec] = {}
    for spec in specs:
        if spec.name in seen:
            raise PipelineDefinitionError(
                f"{spec.where}: step name {spec.name!r} is used twice in pipeline "
                f"{pipeline.name!r} (first at {seen[spec.name].where})"
            )
        seen[spec.name] = spec


def check_unique_outputs(specs: list[StepSpec]) -> dict[str, str]:
    producers: dict[str, str] = {}
    by_name = {s.name: s for s in specs}
    for spec in specs:
        for out in spec.outputs:
            if out in producers and producers[out] != spec.name:
                raise PipelineDefinitionError(
                    f"{spec.where}: output {out!r} of step {spec.name!r} is also produced by "
                    f"step {producers[out]!r} ({by_name[producers[out]].where}); "
                    "output names must be unique"
                )
            producers[out] = spec.name
    return producers


def check_signatures(specs: list[StepSpec]) -> None:
    for spec in specs:
        for p in inspect.signature(spec.fn).parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise PipelineDefinitionError(
                    f"{spec.where}: step {spec.name!r} takes *{p.name}; steps need named "
                    "arguments so inputs can be wired by name"
                )


def resolve_arguments(
    spec: StepSpec, producers: Mapping[str, str], params: dict[str, ParamSpec]
) -> StepNode:
    """Apply the wiring rule of the module docstring to each argument of one step."""
    inputs: dict[str, str] = {}
    datasets: dict[str, str] = {}
    own_params: list[str] = []
    hints = _type_hints(spec)
    for arg in inspect.signature(spec.fn).parameters.values():
        producer = producers.get(arg.name)
        if producer is not None and producer != spec.name:
            inputs[arg.name] = producer
        elif isinstance(arg.default, DatasetInput):
            datasets[arg.name] = arg.default.ref
        elif arg.default is not inspect.Parameter.empty:
            params[arg.name] = check_parameter(spec, arg, hints.get(arg.name), params)
            own_params.append(arg.name)
        else:
            known = ", ".join(sorted(producers)) or "none"
            raise PipelineDefinitionError(
                f"{spec.where}: input {arg.name!r} of step {spec.name!r} is not an output of any "
                f"other step (outputs: {known}); give it a default to make it a parameter"
            )
    check_reads(spec, own_params)
    return StepNode(spec=spec, inputs=inputs, datasets=datasets, params=tuple(own_params))


def check_reads(spec: StepSpec, own_params: list[str]) -> None:
    """``reads=files("{incoming}/*.csv")`` may only name the step's own parameters."""
    for read in spec.reads:
        try:
            named = read.placeholders()
        except ValueError as exc:
            raise PipelineDefinitionError(f"{spec.where}: step {spec.name!r}: {exc}") from None
        unknown = sorted(named - set(own_params))
        if unknown:
            have = ", ".join(own_params) or "none"
            raise PipelineDefinitionError(
                f"{spec.where}: step {spec.name!r} reads {read!r}, but {', '.join(unknown)} "
                f"is not one of its parameters ({have})"
            )


def check_parameter(
    spec: StepSpec, arg: inspect.Parameter, hint: Any, params: Mapping[str, ParamSpec]
) -> ParamSpec:
    kind = hint if hint is not None else type(arg.default)
    if kind not in PARAM_TYPES:
        raise PipelineDefinitionError(
            f"{spec.where}: parameter {arg.name!r} of step {spec.name!r} has type "
            f"{getattr(kind, '__name__', kind)}; parameters must be bool, int, float or str"
        )
    default = arg.default
    if kind is float and isinstance(default, int) and not isinstance(default, bool):
        default = float(default)
    if not isinstance(default, kind) or (kind is int and isinstance(default, bool)):
        raise PipelineDefinitionError(
            f"{spec.where}: default {arg.default!r} of parameter {arg.name!r} is not a "
            f"{kind.__name__}"
        )
    declared = ParamSpec(arg.name, kind, default, spec.where)
    previous = params.get(arg.name)
    if previous is not None and (previous.type, previous.default) != (kind, default):
        raise PipelineDefinitionError(
            f"{spec.where}: parameter {arg.name!r} is {kind.__name__} = {default!r} here but "
            f"{previous.type.__name__} = {previous.default!r} at {previous.where}; a parameter "
            "shared by steps must agree"
        )
    return previous or declared


def check_acyclic(nodes: Mapping[str, StepNode]) -> tuple[str, ...]:
    """Kahn's algorithm; ties keep declaration order so runs are reproducible."""
    remaining = {name: set(node.upstream) for name, node in nodes.items()}
    order: list[str] = []
    while remaining:
        ready = [n for n, deps in remaining.items() if not deps]
        if not ready:
            cycle = _find_cycle({n: nodes[n].upstream for n in remaining})
            where = "; ".join(f"{n} at {nodes[n].spec.where}" for n in cycle[:-1])
            raise PipelineDefinitionError(
                f"{nodes[cycle[0]].spec.where}: the steps form a cycle "
                f"{' -> '.join(cycle)} ({where})"
            )
        for n in ready:
            order.append(n)
            del remaining[n]
        for deps in remaining.values():
            deps.difference_update(ready)
    return tuple(order)


def _find_cycle(upstream: Mapping[str, Iterable[str]]) -> list[str]:
    start = next(iter(upstream))
    path: list[str] = []
    current = start
    while current not in path:
        path.append(current)
        current = next(d for d in upstream[current] if d in upstream)
    cycle = path[path.index(current) :] + [current]
    return list(reversed(cycle))


def _type_hints(spec: StepSpec) -> dict[str, Any]:
    try:
        return typing.get_type_hints(spec.fn)
    except Exception:  # unresolvable forward references: fall back to the defaults' types
        return {}


def _where_of(obj: Callable[..., Any] | object) -> str:
    try:
        return f"{inspect.getsourcefile(obj)}:{inspect.getsourcelines(obj)[1]}"  # type: ignore[arg-type]
    except (OSError, TypeError):
        return "<pipeline>"
