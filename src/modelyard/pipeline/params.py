"""Pipeline parameters: parse ``-p name=value`` and check overrides against the declared types."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from modelyard.errors import InvalidParameter
from modelyard.pipeline.graph import Graph, ParamSpec

_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse_assignments(items: Iterable[str]) -> dict[str, str]:
    """``["a=1", "b=x"]`` -> ``{"a": "1", "b": "x"}``."""
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InvalidParameter(f"parameter {item!r} must look like NAME=VALUE")
        out[name] = value
    return out


def coerce(param: ParamSpec, value: Any) -> Any:
    """A value of the parameter's type; strings (from the command line) are converted."""
    kind = param.type
    if isinstance(value, str) and kind is not str:
        text = value.strip()
        try:
            if kind is bool:
                if text.lower() in _TRUE:
                    return True
                if text.lower() in _FALSE:
                    return False
                raise ValueError(text)
            return kind(text)
        except ValueError:
            raise InvalidParameter(
                f"parameter {param.name!r} expects {kind.__name__}, got {value!r}"
            ) from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise InvalidParameter(
            f"parameter {param.name!r} expects {kind.__name__}, got {type(value).__name__} "
            f"{value!r}"
        )
    return value


def resolve_params(graph: Graph, overrides: Mapping[str, Any] | None) -> dict[str, Any]:
    """Defaults with ``overrides`` applied; an unknown name or a wrong type is an error that
    names the parameter (exit code 2 on the command line)."""
    values = {name: p.default for name, p in graph.params.items()}
    for name, raw in (overrides or {}).items():
        param = graph.params.get(name)
        if param is None:
            known = ", ".join(sorted(graph.params)) or "none"
            raise InvalidParameter(
                f"unknown parameter {name!r} for pipeline {graph.pipeline.name!r} "
                f"(parameters: {known})"
            )
        values[name] = coerce(param, raw)
    return values
