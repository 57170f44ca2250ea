"""Monitoring policies: what to do when a deployment's measurements cross a line.

They live in the workspace config so that they are reviewed like code::

    [monitor]
    interval = "5m"                  # how often `monitor watch` checks
    window = 500                     # requests per window of the prediction log
    allow_private_webhooks = false   # or webhook_allow = ["127.0.0.1", "10.0.0.0/8", "hooks.lan"]

    [[monitor.policies]]
    name = "retrain-on-decay"
    action = "retrain"
    when = ["drift_share > 0.3 for 2 windows", "accuracy < 0.85 with 200 labels"]
    cooldown = "6h"
    metric = "accuracy"              # the challenger must beat the champion on this ...
    margin = 0.01                    # ... by at least this much
    rollout = "shadow,canary"        # how the winner takes the traffic (default: "replace")
    shadow_for = "10m"               # shadow: a copy of live requests, answers compared
    canary_steps = [5, 25, 50, 100]  # canary: the winner's share at each step ...
    canary_interval = "10m"          # ... each analysed before the next (see monitor.analysis)

    [[monitor.policies]]
    name = "page-on-outage"
    action = "alert"
    when = ["latency_p99_ms > 50", "down"]
    webhook = "https://hooks.example.com/modelyard"

A policy fires when ANY of its conditions holds. A condition is ``METRIC OP NUMBER`` with two
optional clauses: ``for N windows`` (it must hold in the N newest windows in a row, so one noisy
window does not retrain) and ``with N labels`` (no verdict below N labelled predictions).
``down`` is short for ``up == 0``. A cooldown stops one lasting event from firing again and
again; it is measured from the last time the policy acted on that deployment.

Parsing happens when a :class:`MonitorConfig` is built, and every error names the key at fault.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelyard.errors import ConfigError

ALERT = "alert"
RETRAIN = "retrain"
ACTIONS = (ALERT, RETRAIN)
RUNNERS = ("local", "in-process", "docker")

# Names a condition may use. The report gatherer (check.py) produces them from the drift,
# quality and availability reports; an unknown name is a typo, refused when the config is read.
METRICS = frozenset(
    {
        "drift_share",
        "drifted_features",
        "prediction_drift",
        "data_quality_findings",
        "accuracy",
        "f1",
        "roc_auc",
        "brier",
        "mae",
        "rmse",
        "r2",
        "labels",
        "requests",
        "error_rate",
        "latency_p50_ms",
        "latency_p95_ms",
        "latency_p99_ms",
        "up",
    }
)
# Quality metrics where lower is better (the challenger comparison flips for them).
LOWER_IS_BETTER = frozenset({"brier", "mae", "rmse"})

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}
_HEAD = re.compile(
    r"(?P<metric>[a-z][a-z0-9_]*)\s*(?P<op><=|>=|==|!=|<|>)\s*"
    r"(?P<value>[-+]?\d+(?:\.\d+)?)\s*(?P<unit>ms|%)?"
)
_WINDOWS = re.compile(r"(?:for|in)\s+(?P<n>\d+)\s+(?:consecutive\s+)?windows?")
_LABELS = re.compile(r"with\s+(?:at\s+least\s+)?(?P<n>\d+)\s+labels?")
_DOWN = re.compile(r"(?:the\s+)?(?:service\s+)?(?:is\s+)?down")
_DURATION = re.compile(r"(?P<n>\d+(?:\.\d+)?)\s*(?P<unit>ms|s|m|h|d)?")
#: The longest duration taken (ten years): longer ones overflow leases and waits.
MAX_DURATION_S = 3650 * 86400.0
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}

Window = Mapping[str, float | None]


@dataclass(frozen=True)
class Condition:
    """One ``METRIC OP NUMBER [for N windows] [with N labels]`` test."""

    text: str
    metric: str
    op: str
    threshold: float
    windows: int = 1
    min_labels: int | None = None

    def holds(self, window: Window) -> bool:
        value = window.get(self.metric)
        if value is None:
            return False
        if self.min_labels is not None:
            labels = window.get("labels")
            if labels is None or labels < self.min_labels:
                return False
        return _OPS[self.op](float(value), self.threshold)

    def check(self, series: Sequence[Window]) -> str | None:
        """Why the condition holds over ``series`` (oldest window first), or None."""
        recent = list(series)[-self.windows :]
        if len(recent) < self.windows or not all(self.holds(w) for w in recent):
            return None
        values = ", ".join(_fmt(w.get(self.metric)) for w in recent)
        where = f" in {self.windows} consecutive windows ({values})" if self.windows > 1 else ""
        now = "" if self.windows > 1 else f" (now {values})"
        labels = ""
        if self.min_labels is not None:
            labels = f", {_fmt(recent[-1].get('labels'))} labels >= {self.min_labels}"
        return f"{self.text}{where}{now}{labels}"


@dataclass(frozen=True)
class Policy:
    name: str
    action: str
    conditions: tuple[Condition, ...]
    cooldown_s: float = 3600.0
    deployments: tuple[str, ...] = ()  # empty: every deployment
    webhook: str | None = None
    metric: str = "accuracy"  # retrain: the comparison metric
    margin: float = 0.0  # retrain: how much better the challenger must be
    pipeline: str | None = None  # retrain: pipeline file (default: the champion's own)
    params: Mapping[str, Any] = field(default_factory=dict)  # retrain: parameter overrides
    runner: str | None = None  # retrain: pipeline runner (local, in-process, docker)
    rollout: tuple[str, ...] = ()  # retrain: progressive phases (shadow, canary); (): replace
    shadow_sample: float = 1.0
    shadow_for_s: float = 600.0
    shadow_requests: int | None = None
    canary_steps: tuple[float, ...] = (5.0, 25.0, 50.0, 100.0)
    canary_interval_s: float = 600.0
    sticky: str | None = None

    def applies_to(self, deployment: str) -> bool:
        return not self.deployments or deployment in self.deployments

    def check(self, series: Sequence[Window]) -> list[str]:
        """The reasons this policy fires on ``series`` (empty: it does not)."""
        return [r for c in self.conditions if (r := c.check(series)) is not None]

    @property
    def lower_is_better(self) -> bool:
        return self.metric in LOWER_IS_BETTER

    @property
    def windows_needed(self) -> int:
        return max((c.windows for c in self.conditions), default=1)


@dataclass(frozen=True)
class MonitorConfig:
    policies: tuple[Policy, ...] = ()
    interval_s: float = 300.0
    allow_private_webhooks: bool = False
    webhook_allow: tuple[str, ...] = ()
    lease_s: float = 3600.0
    deployments: tuple[str, ...] = ()  # watch: which deployments (empty: all of them)
    window_requests: int = 500

    def policies_for(self, deployment: str) -> list[Policy]:
        return [p for p in self.policies if p.applies_to(deployment)]


def load_config(section: Mapping[str, Any]) -> MonitorConfig:
    """Parse the ``[monitor]`` table of the workspace config."""
    known = {
        "interval",
        "window",
        "allow_private_webhooks",
        "webhook_allow",
        "lease",
        "deployments",
        "policies",
    }
    _no_unknown(section, known, "[monitor]")
    raw_policies = section.get("policies", [])
    if not isinstance(raw_policies, list):
        raise ConfigError("[monitor] policies must be an array of tables ([[monitor.policies]])")
    policies = tuple(_policy(raw, i) for i, raw in enumerate(raw_policies))
    names = [p.name for p in policies]
    for name in names:
        if names.count(name) > 1:
            raise ConfigError(f"[[monitor.policies]] name {name!r} is used twice")
    allow = section.get("allow_private_webhooks", False)
    if not isinstance(allow, bool):
        raise ConfigError("[monitor] allow_private_webhooks must be true or false")
    window = section.get("window", 500)
    if isinstance(window, bool) or not isinstance(window, int) or window < 1:
        raise ConfigError(f"[monitor] window must be a number of requests >= 1, not {window!r}")
    return MonitorConfig(
        policies=policies,
        window_requests=window,
        interval_s=parse_duration(section.get("interval", 300), "[monitor] interval"),
        allow_private_webhooks=allow,
        webhook_allow=_strings(section.get("webhook_allow", []), "[monitor] webhook_allow"),
        lease_s=parse_duration(section.get("lease", 3600), "[monitor] lease"),
        deployments=_strings(section.get("deployments", []), "[monitor] deployments"),
    )


def parse_condition(text: str, where: str = "condition") -> Condition:
    """``"drift_share > 0.3 for 2 windows"``, ``"accuracy < 0.85 with 200 labels"``,
    ``"latency_p99_ms > 50"``, ``"down"``."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"{where} must be a condition like 'drift_share > 0.3', not {text!r}")
    clean = " ".join(text.strip().split())
    if _DOWN.fullmatch(clean.lower()):
        return Condition(clean, "up", "==", 0.0)
    head = _HEAD.match(clean)
    if head is None:
        raise ConfigError(
            f"{where} = {text!r}: expected 'METRIC OP NUMBER [for N windows] "
            "[with N labels]' or 'down'"
        )
    metric = head["metric"]
    if metric not in METRICS:
        raise ConfigError(
            f"{where} = {text!r}: unknown metric {metric!r} (known: {', '.join(sorted(METRICS))})"
        )
    threshold = float(head["value"])
    if head["unit"] == "%":
        threshold /= 100.0
    windows, labels = 1, None
    rest = clean[head.end() :].strip()
    while rest:
        if (m := _WINDOWS.match(rest)) is not None:
            windows = int(m["n"])
            if windows < 1:
                raise ConfigError(f"{where} = {text!r}: windows must be at least 1")
        elif (m := _LABELS.match(rest)) is not None:
            labels = int(m["n"])
        else:
            raise ConfigError(
                f"{where} = {text!r}: cannot read {rest!r} "
                "(expected 'for N windows' or 'with N labels')"
            )
        rest = rest[m.end() :].strip()
    return Condition(clean, metric, head["op"], threshold, windows, labels)


def parse_duration(value: Any, where: str) -> float:
    """Seconds from ``300``, ``"90s"``, ``"5m"``, ``"6h"``, ``"1d"``."""
    if isinstance(value, bool):
        raise ConfigError(f"{where} must be a duration like 300 or '5m', not {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str) and (m := _DURATION.fullmatch(value.strip())) is not None:
        seconds = float(m["n"]) * _UNITS[m["unit"]]
    else:
        raise ConfigError(f"{where} must be a duration like 300 or '5m', not {value!r}")
    if seconds < 0:
        raise ConfigError(f"{where} must not be negative")
    if not math.isfinite(seconds) or seconds > MAX_DURATION_S:
        # An endless wait is a stop, not a duration; beyond this, leases and waits overflow.
        raise ConfigError(f"{where} must be at most {MAX_DURATION_S // 86400:.0f} days")
    return seconds


def _policy(raw: Any, index: int) -> Policy:
    where = f"[[monitor.policies]] #{index + 1}"
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where} must be a table")
    name = raw.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}", name):
        raise ConfigError(f"{where} name must be letters, digits, '-', '_' or '.', not {name!r}")
    where = f"[[monitor.policies]] {name!r}"
    _no_unknown(
        raw,
        {
            "name",
            "action",
            "when",
            "cooldown",
            "deployments",
            "webhook",
            "metric",
            "margin",
            "pipeline",
            "params",
            "runner",
            "rollout",
            "shadow_sample",
            "shadow_for",
            "shadow_requests",
            "canary_steps",
            "canary_interval",
            "sticky",
        },
        where,
    )
    action = raw.get("action")
    if action not in ACTIONS:
        raise ConfigError(f"{where} action must be one of {', '.join(ACTIONS)}, not {action!r}")
    when = raw.get("when")
    if isinstance(when, str):
        when = [when]
    if not isinstance(when, list) or not when:
        raise ConfigError(f"{where} when must be a condition or a non-empty list of them")
    conditions = tuple(parse_condition(c, f"{where} when[{i}]") for i, c in enumerate(when))
    webhook = raw.get("webhook")
    if webhook is not None and not isinstance(webhook, str):
        raise ConfigError(f"{where} webhook must be a URL")
    metric = raw.get("metric", "accuracy")
    if metric not in METRICS:
        raise ConfigError(f"{where} metric: unknown metric {metric!r}")
    margin = raw.get("margin", 0.0)
    if isinstance(margin, bool) or not isinstance(margin, int | float) or margin < 0:
        raise ConfigError(f"{where} margin must be a number >= 0, not {margin!r}")
    pipeline = raw.get("pipeline")
    if pipeline is not None and (not isinstance(pipeline, str) or not pipeline):
        raise ConfigError(f"{where} pipeline must be the path of a pipeline file")
    params = raw.get("params", {})
    if not isinstance(params, Mapping):
        raise ConfigError(f"{where} params must be a table of pipeline parameters")
    runner = raw.get("runner")
    if runner is not None and runner not in RUNNERS:
        raise ConfigError(f"{where} runner must be one of {', '.join(RUNNERS)}, not {runner!r}")
    rollout = _rollout(raw, where)
    return Policy(
        name=name,
        runner=runner,
        **rollout,
        pipeline=pipeline,
        params=dict(params),
        action=action,
        conditions=conditions,
        cooldown_s=parse_duration(raw.get("cooldown", 3600), f"{where} cooldown"),
        deployments=_strings(raw.get("deployments", []), f"{where} deployments"),
        webhook=webhook,
        metric=metric,
        margin=float(margin),
    )


def _rollout(raw: Mapping[str, Any], where: str) -> dict[str, Any]:
    """A retrain policy's rollout settings: ``rollout`` is ``replace`` or phases among
    ``shadow``, ``canary`` (comma-separated, shadow first)."""
    text = raw.get("rollout", "replace")
    phases = [p.strip() for p in text.split(",")] if isinstance(text, str) else None
    if phases is None or phases == ["replace"]:
        if phases is None:
            raise ConfigError(f"{where} rollout must be 'replace', 'shadow', 'canary' or "
                              "'shadow,canary'")  # fmt: skip
        phases = []
    if phases not in ([], ["shadow"], ["canary"], ["shadow", "canary"]):
        raise ConfigError(
            f"{where} rollout must be 'replace', 'shadow', 'canary' or 'shadow,canary', "
            f"not {text!r}"
        )
    out: dict[str, Any] = {"rollout": tuple(phases)}
    sample = raw.get("shadow_sample", 1.0)
    if isinstance(sample, bool) or not isinstance(sample, int | float) or not 0 < sample <= 1:
        raise ConfigError(f"{where} shadow_sample must be a share above 0 and at most 1")
    out["shadow_sample"] = float(sample)
    out["shadow_for_s"] = parse_duration(raw.get("shadow_for", 600), f"{where} shadow_for")
    requests = raw.get("shadow_requests")
    if requests is not None and (isinstance(requests, bool) or not isinstance(requests, int)
                                 or requests < 1):  # fmt: skip
        raise ConfigError(f"{where} shadow_requests must be a number of requests >= 1")
    out["shadow_requests"] = requests
    steps = raw.get("canary_steps", [5, 25, 50, 100])
    if (
        not isinstance(steps, list)
        or not steps
        or not all(isinstance(p, int | float) and not isinstance(p, bool) for p in steps)
        or any(not 0 < p <= 100 for p in steps)
        or any(b <= a for a, b in zip(steps, steps[1:], strict=False))
    ):
        raise ConfigError(f"{where} canary_steps must be growing percentages like [5, 25, 100]")
    out["canary_steps"] = tuple(float(p) for p in steps)
    out["canary_interval_s"] = parse_duration(
        raw.get("canary_interval", 600), f"{where} canary_interval"
    )
    if out["shadow_for_s"] <= 0 or out["canary_interval_s"] <= 0:
        raise ConfigError(f"{where} shadow_for and canary_interval must be positive")
    sticky = raw.get("sticky")
    header = r"[A-Za-z0-9][A-Za-z0-9-]{0,63}"
    if sticky is not None and (not isinstance(sticky, str) or not re.fullmatch(header, sticky)):
        raise ConfigError(f"{where} sticky must be a request header name")
    out["sticky"] = sticky
    return out


def _strings(value: Any, where: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError(f"{where} must be a list of strings")
    return tuple(value)


def _no_unknown(table: Mapping[str, Any], known: set[str], where: str) -> None:
    unknown = sorted(set(table) - known)
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(known))})"
        )


def _fmt(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.4g}"


__all__ = [
    "ACTIONS",
    "ALERT",
    "METRICS",
    "RETRAIN",
    "Condition",
    "MonitorConfig",
    "Policy",
    "load_config",
    "parse_condition",
    "parse_duration",
]
