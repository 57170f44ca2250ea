"""Steps and pipelines as plain Python.

A step is an ordinary typed function; ``@step`` only attaches a :class:`StepSpec` to it, so the
function stays callable (and testable) without any framework object. A :class:`Pipeline` is a
named list of steps; the graph between them is implied by names (see :mod:`.graph` for the
rule), never by wiring code.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, overload

from modelyard.errors import InvalidValue
from modelyard.refs import Ref, validate_name

F = TypeVar("F", bound=Callable[..., Any])

STEP_ATTR = "__modelyard_step__"


@dataclass(frozen=True)
class DatasetInput:
    """A step argument's default that asks for a dataset version: ``dataset("sensors@latest")``.

    The orchestrator resolves it to one concrete version when the pipeline run starts (so the
    cache key holds that version's digest) and hands the step a
    :class:`modelyard.store.DatasetVersion`.
    """

    ref: str

    def __repr__(self) -> str:
        return f"dataset({self.ref!r})"


def dataset(ref: str) -> Any:
    """Mark a step argument as a versioned dataset input: ``def check(raw=dataset("sensors"))``.

    Typed ``Any`` so it can be the default of an argument annotated ``DatasetVersion``."""
    Ref.parse(ref, kind="dataset reference")
    return DatasetInput(ref)


READ_KINDS = ("files", "datasets", "models")


@dataclass(frozen=True)
class Read:
    """What a step reads from outside the pipeline, so its cache key can hold its digest:
    ``files("{incoming}/*.csv")``, ``datasets("{dataset_name}")``, ``models("churn@production")``.

    Each item may name the step's parameters in braces; they are filled in with the run's
    values. Files are glob patterns (a folder stands for every file under it), relative to the
    workspace root unless absolute; a dataset or model reference is resolved when the step is
    about to run (a name alone is the latest version). Nothing matching is a state too: a new
    file, the first version of a dataset or a model reaching its alias changes the key.
    """

    kind: str
    items: tuple[str, ...]

    def __post_init__(self) -> None:
        if self.kind not in READ_KINDS:
            raise InvalidValue(f"a step reads one of {', '.join(READ_KINDS)}, not {self.kind!r}")
        if not self.items:
            raise InvalidValue(f"{self.kind}(): name at least one")
        for item in self.items:
            if not isinstance(item, str) or not item.strip():
                raise InvalidValue(f"{self.kind}(): {item!r} is not a non-empty string")

    def placeholders(self) -> set[str]:
        """The parameter names the items refer to."""
        import string

        names: set[str] = set()
        for item in self.items:
            try:
                fields = [f for _, f, _, _ in string.Formatter().parse(item) if f is not None]
            except ValueError as exc:
                raise InvalidValue(f"{self.kind}({item!r}): {exc}") from None
            for f in fields:
                if not f.isidentifier():
                    raise InvalidValue(f"{self.kind}({item!r}): {{{f}}} is not a parameter name")
                names.add(f)
        return names

    def __repr__(self) -> str:
        return f"{self.kind}({', '.join(map(repr, self.items))})"


def files(*patterns: str) -> Read:
    """A step reads these files (glob patterns; ``{param}`` is the parameter's value)."""
    return Read("files", patterns)


def datasets(*refs: str) -> Read:
    """A step reads these datasets by name (``sensors``: the latest version) or reference."""
    return Read("datasets", refs)


def models(*refs: str) -> Read:
    """A step reads these registered models (``churn@production``, ``churn``: the latest)."""
    return Read("models", refs)


@dataclass(frozen=True)
class StepSpec:
    """What ``@step`` records about a function. ``outputs`` names the values it returns: by
    default one output named after the function; several names mean it returns a tuple (or a
    dict with those keys); an empty tuple means it returns nothing."""

    name: str
    fn: Callable[..., Any]
    outputs: tuple[str, ...]
    cache: bool = True
    retries: int = 0
    retry_delay: float = 1.0
    timeout: float | None = None
    pickle: bool = False
    reads: tuple[Read, ...] = ()
    image: str | None = None  # a prebuilt image this step runs in (docker, Argo, Kubeflow)
    requirements: tuple[str, ...] = ()  # the step image's packages, when it has its own

    @property
    def source_file(self) -> Path:
        return Path(inspect.getsourcefile(self.fn) or "<unknown>")

    @property
    def line(self) -> int:
        try:
            return inspect.getsourcelines(self.fn)[1]
        except (OSError, TypeError):
            return 0

    @property
    def where(self) -> str:
        """``file:line`` of the definition, for error messages."""
        return f"{self.source_file}:{self.line}"


@overload
def step(fn: F, /) -> F: ...


@overload
def step(
    *,
    name: str | None = None,
    outputs: str | Sequence[str] | None = None,
    cache: bool = True,
    retries: int = 0,
    retry_delay: float = 1.0,
    timeout: float | None = None,
    pickle: bool = False,
    reads: Read | Sequence[Read] = (),
    image: str | None = None,
    requirements: Sequence[str] = (),
) -> Callable[[F], F]: ...


def step(
    fn: F | None = None,
    /,
    *,
    name: str | None = None,
    outputs: str | Sequence[str] | None = None,
    cache: bool = True,
    retries: int = 0,
    retry_delay: float = 1.0,
    timeout: float | None = None,
    pickle: bool = False,
    reads: Read | Sequence[Read] = (),
    image: str | None = None,
    requirements: Sequence[str] = (),
) -> F | Callable[[F], F]:
    """Declare a function as a pipeline step; the function itself is returned unchanged.

    A step whose result depends on the outside world says what it reads, ``reads=files(
    "{incoming}/*.csv")`` (see :class:`Read`), and stays cached on the digest of what it read;
    ``cache=False`` runs it every time. ``retries`` re-runs a failed attempt after
    ``retry_delay * 2**n`` seconds. ``timeout`` (seconds) kills an attempt that runs longer.
    ``pickle=True`` lets outputs that no safe serializer handles be pickled: only for values
    you produce and trust.

    ``image`` and ``requirements`` give the step an image of its own on the docker runner and
    in compiled Argo and Kubeflow pipelines (``[pipeline.steps.NAME]`` in ``modelyard.toml``
    overrides both; see :mod:`modelyard.pipeline.step_images`): a prebuilt image, or the
    installed packages (with what they need, at the versions installed here) the docker runner
    builds the step's image from.
    """
    from modelyard.pipeline.step_images import check_image, check_requirements

    if retries < 0:
        raise InvalidValue("retries must be >= 0")
    if timeout is not None and timeout <= 0:
        raise InvalidValue("timeout must be a positive number of seconds")
    read_list = (reads,) if isinstance(reads, Read) else tuple(reads)
    for r in read_list:
        if not isinstance(r, Read):
            raise InvalidValue(f"reads= takes files(...), datasets(...) or models(...), not {r!r}")
    step_image = check_image(image, "@step(image=...)") if image is not None else None
    step_requirements = check_requirements(requirements, "@step(requirements=...)")

    def decorate(f: F) -> F:
        step_name = validate_name(name or f.__name__, "step name")
        if outputs is None:
            outs: tuple[str, ...] = (step_name,)
        elif isinstance(outputs, str):
            outs = (outputs,)
        else:
            outs = tuple(outputs)
        for out in outs:
            if not out.isidentifier():
                raise InvalidValue(f"step {step_name!r}: output name {out!r} is not an identifier")
        spec = StepSpec(
            name=step_name,
            fn=f,
            outputs=outs,
            cache=cache,
            retries=retries,
            retry_delay=retry_delay,
            timeout=timeout,
            pickle=pickle,
            reads=read_list,
            image=step_image,
            requirements=step_requirements,
        )
        setattr(f, STEP_ATTR, spec)
        return f

    if fn is not None:
        return decorate(fn)
    return decorate


def spec_of(obj: Any) -> StepSpec | None:
    spec = getattr(obj, STEP_ATTR, None)
    return spec if isinstance(spec, StepSpec) else None


@dataclass
class Pipeline:
    """A named set of steps. Order in the list does not matter: the graph decides it."""

    name: str
    steps: Sequence[Callable[..., Any]]
    description: str = ""
    defined_at: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        validate_name(self.name, "pipeline name")
        if not self.defined_at:
            frame = inspect.currentframe()
            caller = frame.f_back.f_back if frame and frame.f_back else None
            if caller is not None:
                self.defined_at = f"{caller.f_code.co_filename}:{caller.f_lineno}"
