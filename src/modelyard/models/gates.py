"""Promotion gates: checks a version must pass before an alias may point at it.

A check reads ``METRIC OP NUMBER`` or ``METRIC OP ALIAS.METRIC [+|- NUMBER]``, e.g.
``f1 >= 0.80`` or ``f1 >= production.f1 - 0.01``. It is parsed by a tiny tokenizer, never
evaluated as code. Metrics are the last values logged by the version's run.

Gates come from the workspace config and from the model itself, and both apply::

    [models.gate]             # every model without a gate of its own in the config
    checks = ["f1 >= 0.8"]
    [models.gates.churn]      # replaces [models.gate] for churn
    checks = ["f1 >= production.f1 - 0.01"]
    require_approval = true
    aliases = ["production"]  # which aliases it guards (default: all)
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelyard.errors import ConfigError, InvalidParameter, NotFound
from modelyard.refs import validate_alias

if TYPE_CHECKING:
    from modelyard.store.models_entities import ModelVersion
    from modelyard.workspace import Workspace

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    ">": operator.gt,
    "<": operator.lt,
    "==": operator.eq,
    "!=": operator.ne,
}
_METRIC = r"[A-Za-z_][A-Za-z0-9_./:-]*"
_NUMBER = r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?"
_CHECK_RE = re.compile(
    rf"^\s*(?P<metric>{_METRIC})\s*(?P<op>>=|<=|==|!=|>|<)\s*"
    rf"(?:(?P<number>{_NUMBER})"
    rf"|(?P<alias>[A-Za-z][A-Za-z0-9_-]*)\.(?P<ref_metric>{_METRIC}?)"
    rf"(?:\s*(?P<sign>[+-])\s*(?P<offset>{_NUMBER}))?)\s*$"
)
_GATE_KEYS = {"checks", "require_approval", "aliases"}


@dataclass(frozen=True)
class Check:
    """One parsed gate check. Exactly one of ``value`` and ``alias`` is set."""

    text: str
    metric: str
    op: str
    value: float | None = None
    alias: str | None = None
    alias_metric: str | None = None
    offset: float = 0.0


def parse_check(text: str) -> Check:
    """Parse one check; the error names the expression and shows the accepted forms."""
    if not isinstance(text, str):
        raise InvalidParameter(f"gate check {text!r} must be text like 'f1 >= 0.8'")
    match = _CHECK_RE.match(text)
    if match is None or (match["alias"] is not None and not match["ref_metric"]):
        raise InvalidParameter(
            f"gate check {text!r} is not valid: write 'METRIC OP NUMBER' or "
            f"'METRIC OP ALIAS.METRIC [+|- NUMBER]' with OP one of {', '.join(_OPS)} "
            "(e.g. 'f1 >= 0.8', 'f1 >= production.f1 - 0.01')"
        )
    if match["number"] is not None:
        value = float(match["number"])
        if not math.isfinite(value):
            raise InvalidParameter(f"gate check {text!r}: the number must be finite")
        return Check(text.strip(), match["metric"], match["op"], value=value)
    alias = match["alias"]
    try:
        validate_alias(alias)
    except Exception:
        raise InvalidParameter(f"gate check {text!r}: {alias!r} is not an alias name") from None
    offset = float(match["offset"]) if match["offset"] is not None else 0.0
    if match["sign"] == "-":
        offset = -offset
    return Check(
        text.strip(),
        match["metric"],
        match["op"],
        alias=alias,
        alias_metric=match["ref_metric"],
        offset=offset,
    )


@dataclass(frozen=True)
class Gate:
    checks: tuple[Check, ...] = ()
    require_approval: bool = False
    aliases: tuple[str, ...] | None = None  # None: guards every alias

    def guards(self, alias: str) -> bool:
        return self.aliases is None or alias in self.aliases

    @property
    def empty(self) -> bool:
        return not self.checks and not self.require_approval


def parse_gate(raw: Any, where: str) -> Gate:
    """A gate from a config table / stored setting, or a bare list of checks."""
    if raw is None:
        return Gate()
    if isinstance(raw, list | tuple):
        raw = {"checks": list(raw)}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: a gate is a table with 'checks' (a list of strings)")
    unknown = set(raw) - _GATE_KEYS
    if unknown:
        raise ConfigError(
            f"{where}: unknown gate key(s) {', '.join(sorted(unknown))}; "
            f"allowed: {', '.join(sorted(_GATE_KEYS))}"
        )
    checks = raw.get("checks", [])
    if not isinstance(checks, list | tuple):
        raise ConfigError(f"{where}: 'checks' must be a list of strings")
    approval = raw.get("require_approval", False)
    if not isinstance(approval, bool):
        raise ConfigError(f"{where}: 'require_approval' must be true or false")
    aliases = raw.get("aliases")
    if aliases is not None:
        if not isinstance(aliases, list | tuple) or not all(isinstance(a, str) for a in aliases):
            raise ConfigError(f"{where}: 'aliases' must be a list of alias names")
        aliases = tuple(validate_alias(a) for a in aliases)
    try:
        parsed = tuple(parse_check(c) for c in checks)
    except InvalidParameter as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return Gate(parsed, approval, aliases)


def gate_to_dict(gate: Gate) -> dict[str, Any]:
    out: dict[str, Any] = {
        "checks": [c.text for c in gate.checks],
        "require_approval": gate.require_approval,
    }
    if gate.aliases is not None:
        out["aliases"] = list(gate.aliases)
    return out


def gates_for(ws: Workspace, name: str, alias: str) -> list[tuple[str, Gate]]:
    """Every gate guarding ``name@alias``, each with where it was declared."""
    section = ws.settings.section("models")
    found: list[tuple[str, Gate]] = []
    per_model = section.get("gates", {})
    if not isinstance(per_model, Mapping):
        raise ConfigError("[models.gates] in the workspace config must be a table")
    if name in per_model:
        found.append(
            (f"[models.gates.{name}]", parse_gate(per_model[name], f"[models.gates.{name}]"))
        )
    elif "gate" in section:
        found.append(("[models.gate]", parse_gate(section["gate"], "[models.gate]")))
    stored = ws.store.models.get(name).gate
    if stored:
        found.append((f"model {name}", parse_gate(stored, f"the gate of model {name!r}")))
    return [(where, gate) for where, gate in found if gate.guards(alias) and not gate.empty]


@dataclass(frozen=True)
class CheckResult:
    check: str
    passed: bool
    actual: float | None
    threshold: float | None
    detail: str
    source: str  # where the gate was declared


@dataclass(frozen=True)
class GateReport:
    ref: str  # "churn@5"
    alias: str
    results: tuple[CheckResult, ...]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    @property
    def failed(self) -> list[CheckResult]:
        return [r for r in self.results if not r.passed]

    def failed_texts(self) -> list[str]:
        return [f"{r.check}: {r.detail}" for r in self.failed]


def evaluate(ws: Workspace, version: ModelVersion, alias: str) -> GateReport:
    """Run every check guarding ``alias`` against ``version``; never raises for a failed
    check, so the caller can show all of them at once."""
    results: list[CheckResult] = []
    metrics = _metrics(ws, version)
    for source, gate in gates_for(ws, version.name, alias):
        for check in gate.checks:
            results.append(_run_check(ws, version, metrics, check, source))
        if gate.require_approval:
            approvals = ws.store.models.approvals(version.name, version.version)
            if approvals:
                who = ", ".join(sorted({a.actor or "unknown" for a in approvals}))
                results.append(
                    CheckResult("approval", True, None, None, f"approved by {who}", source)
                )
            else:
                results.append(
                    CheckResult(
                        "approval",
                        False,
                        None,
                        None,
                        f"no approval; run 'modelyard models approve {version.ref}'",
                        source,
                    )
                )
    return GateReport(version.ref, alias, tuple(results))


def _metrics(ws: Workspace, version: ModelVersion) -> dict[str, float] | None:
    if version.run_id is None:
        return None
    try:
        return dict(ws.store.runs.get(version.run_id).latest_metrics)
    except NotFound:
        return None


def _run_check(
    ws: Workspace,
    version: ModelVersion,
    metrics: dict[str, float] | None,
    check: Check,
    source: str,
) -> CheckResult:
    def fail(
        detail: str, actual: float | None = None, threshold: float | None = None
    ) -> CheckResult:
        return CheckResult(check.text, False, actual, threshold, detail, source)

    if metrics is None:
        return fail(f"{version.ref} has no run, so no metrics to check")
    actual = metrics.get(check.metric)
    if actual is None:
        return fail(f"run {version.run_id} logged no metric {check.metric!r}")
    if check.value is not None:
        threshold = check.value
    else:
        assert check.alias is not None
        assert check.alias_metric is not None
        try:
            other = ws.store.models.get_version(version.name, alias=check.alias)
        except NotFound:
            return CheckResult(
                check.text,
                True,
                actual,
                None,
                f"skipped: {version.name} has no {check.alias!r} version yet",
                source,
            )
        base = (_metrics(ws, other) or {}).get(check.alias_metric)
        if base is None:
            return fail(f"{other.ref} ({check.alias}) has no metric {check.alias_metric!r}", actual)
        threshold = base + check.offset
    ok = _OPS[check.op](actual, threshold)
    detail = f"{check.metric} = {actual:g} {'meets' if ok else 'fails'} {check.op} {threshold:g}"
    return CheckResult(check.text, ok, actual, threshold, detail, source)


def set_gate(
    name: str,
    checks: Sequence[str],
    *,
    require_approval: bool = False,
    aliases: Sequence[str] | None = None,
    workspace: Workspace | None = None,
) -> Gate:
    """Store the model's own gate (checked now, so a typo fails here, not at promotion)."""
    from modelyard.workspace import resolve as resolve_workspace

    gate = Gate(
        tuple(parse_check(c) for c in checks),
        require_approval,
        tuple(validate_alias(a) for a in aliases) if aliases is not None else None,
    )
    ws = resolve_workspace(workspace)
    ws.store.models.set_gate(name, None if gate.empty else gate_to_dict(gate))
    return gate
