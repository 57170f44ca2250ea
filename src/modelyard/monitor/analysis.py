"""The analysis between two steps of a progressive rollout: the candidate against the serving
version (the *primary*) on the same window of live traffic.

Every number comes from what the servers recorded in that window:

- **requests, errors**: answered predictions in the prediction log, plus each variant's 5xx
  (its replicas' ``/metrics``, the change over the window) and the requests the serving
  version could not hand to the candidate at all (``modelyard_variant_requests_total`` with
  outcome ``unreachable``);
- **p99 latency**: the server-side latency of each variant's logged predictions;
- **agreement** (shadow): both answers to the same request (same request id, identical
  inputs), row by row; numbers agree within ``agreement_tolerance`` (relative);
- **prediction distance**: between the two variants' prediction distributions — total
  variation distance for class labels, the Kolmogorov–Smirnov statistic for numbers (both 0
  for the same distribution, 1 for disjoint ones);
- **quality**: each variant's predictions joined to the feedback labels, once both have
  ``min_labels`` (accuracy for classification, MAE for regression, unless ``quality_metric``).

Thresholds come from ``[deploy.analysis]`` in the workspace config, overridable per command::

    [deploy.analysis]
    min_requests = 20                # candidate answers a step needs for a verdict
    max_error_rate_increase = 0.01   # candidate error rate <= primary's + this
    max_latency_p99_ratio = 1.5      # candidate p99 <= primary p99 * ratio + slack
    latency_p99_slack_ms = 20
    min_agreement = 0.8              # shadow: share of rows answered alike
    agreement_tolerance = 0.05       # numbers within 5 % agree
    max_prediction_distance = 0.3
    min_labels = 50                  # quality is compared from this many labels on
    max_quality_drop = 0.02          # candidate quality >= primary's - this
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.errors import ConfigError, InvalidParameter

if TYPE_CHECKING:
    import pyarrow as pa

    from modelyard.workspace import Workspace

PRIMARY = "primary"
SHADOW = "shadow"
CANARY = "canary"
UNREACHABLE = "unreachable"


@dataclass(frozen=True)
class Thresholds:
    """The lines a candidate must stay within (see the module docstring)."""

    min_requests: int = 20
    max_error_rate_increase: float = 0.01
    max_latency_p99_ratio: float = 1.5
    latency_p99_slack_ms: float = 20.0
    min_agreement: float = 0.8
    agreement_tolerance: float = 0.05
    max_prediction_distance: float = 0.3
    min_labels: int = 50
    max_quality_drop: float = 0.02
    quality_metric: str | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name == "quality_metric":
                if value is not None and value not in _QUALITY:
                    raise InvalidParameter(
                        f"quality_metric must be one of {', '.join(sorted(_QUALITY))}, "
                        f"not {value!r}"
                    )
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidParameter(f"analysis threshold {f.name} must be a number")
            if not math.isfinite(value) or value < 0:
                raise InvalidParameter(f"analysis threshold {f.name} must be >= 0, not {value}")

    def override(self, items: Mapping[str, Any], where: str) -> Thresholds:
        """These thresholds with ``items`` (from the config or ``--check KEY=VALUE``) applied;
        an unknown key is an error naming the known ones."""
        known = {f.name: f for f in fields(self)}
        changes: dict[str, Any] = {}
        for key, raw in items.items():
            if key not in known:
                raise ConfigError(
                    f"{where}: unknown analysis threshold {key!r} (known: {', '.join(known)})"
                )
            if key == "quality_metric":
                changes[key] = None if raw in (None, "") else str(raw)
                continue
            try:
                number = float(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"{where}: {key} must be a number, not {raw!r}") from None
            if not math.isfinite(number):  # nan passed every comparison; int(inf) overflowed
                raise ConfigError(f"{where}: {key} must be a finite number, not {raw!r}")
            changes[key] = int(number) if key in ("min_requests", "min_labels") else number
        try:
            return replace(self, **changes)
        except InvalidParameter as exc:
            raise ConfigError(f"{where}: {exc.message}") from None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_QUALITY = {
    "accuracy": False,
    "f1": False,
    "roc_auc": False,
    "mae": True,
    "rmse": True,
    "r2": False,
}


def thresholds_for(ws: Workspace, overrides: Mapping[str, Any] | None = None) -> Thresholds:
    """``[deploy.analysis]`` of the workspace config, then ``overrides`` (a command's)."""
    section = ws.settings.section("deploy")
    table = section.get("analysis", {}) if isinstance(section, Mapping) else {}
    if not isinstance(table, Mapping):
        raise ConfigError("[deploy.analysis] in the workspace config must be a table")
    found = Thresholds().override(table, "[deploy.analysis]")
    return found.override(overrides or {}, "--check")


@dataclass(frozen=True)
class Counts:
    """What the replicas' ``/metrics`` said at one moment: 5xx answers to predictions per
    variant, and the serving version's outcomes of handing requests to the candidate."""

    primary_errors: float = 0.0
    candidate_errors: float = 0.0
    unreachable: float = 0.0

    def since(self, earlier: Counts) -> Counts:
        """The change since ``earlier``; a counter that went down was reset (a restart), so
        its whole value is new."""

        def delta(now: float, then: float) -> float:
            return now - then if now >= then else now

        return Counts(
            delta(self.primary_errors, earlier.primary_errors),
            delta(self.candidate_errors, earlier.candidate_errors),
            delta(self.unreachable, earlier.unreachable),
        )


def scrape_counts(primary_urls: list[str], candidate_urls: list[str]) -> Counts:
    from modelyard.deploy.probe import get_text
    from modelyard.deploy.traffic import traffic_from_metrics

    def texts(urls: list[str]) -> list[str]:
        return [t for t in (get_text(f"{u}/metrics") for u in urls) if t is not None]

    primary = texts(primary_urls)
    return Counts(
        traffic_from_metrics(primary).errors,
        traffic_from_metrics(texts(candidate_urls)).errors,
        _variant_outcome(primary, UNREACHABLE),
    )


def _variant_outcome(texts: list[str], outcome: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    total = 0.0
    for text in texts:
        for family in text_string_to_metric_families(text):
            if family.name != "modelyard_variant_requests":
                continue
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels.get("outcome") == outcome:
                    total += sample.value
    return total


@dataclass(frozen=True)
class CheckResult:
    """One row of the analysis table. ``passed`` None: no verdict yet (e.g. too few labels),
    which does not fail the step."""

    check: str
    candidate: float | None
    primary: float | None
    limit: str
    passed: bool | None
    detail: str

    @property
    def verdict(self) -> str:
        return "pass" if self.passed else "n/a" if self.passed is None else "FAIL"


@dataclass(frozen=True)
class Analysis:
    """The verdict on one window: every check, the window and how many answers it held."""

    mode: str
    since: str
    until: str
    candidate_requests: int
    primary_requests: int
    results: tuple[CheckResult, ...] = field(default_factory=tuple)

    @property
    def passed(self) -> bool:
        return all(r.passed is not False for r in self.results)

    def failed_texts(self) -> list[str]:
        return [f"{r.check}: {r.detail}" for r in self.results if r.passed is False]

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["passed"] = self.passed
        return doc

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Analysis:
        return cls(
            data["mode"],
            data["since"],
            data["until"],
            data["candidate_requests"],
            data["primary_requests"],
            tuple(CheckResult(**r) for r in data.get("results", ())),
        )


def read_window(log_dir: Path, since: dt.datetime, until: dt.datetime) -> pa.Table | None:
    """The prediction log's rows logged in ``[since, until)`` (every variant)."""
    import pyarrow as pa

    from modelyard.monitor.windows import _filter, iter_batches

    batches = [
        b for b in (_filter(b, since, until, None) for b in iter_batches(log_dir)) if b.num_rows
    ]
    return pa.Table.from_batches(batches) if batches else None


def _rows(table: pa.Table | None, variant: str, version: str) -> pa.Table | None:
    import pyarrow.compute as pc

    if table is None:
        return None
    mask = pc.and_(
        pc.equal(table.column("variant"), variant),
        pc.equal(table.column("model_version"), version),
    )
    return table.filter(mask)


def analyse(
    log_dir: Path,
    *,
    mode: str,
    primary_version: str,
    candidate_version: str,
    since: dt.datetime,
    until: dt.datetime,
    counts: Counts,
    thresholds: Thresholds,
    fault: str | None = None,
) -> Analysis:
    """Candidate against primary on the window ``[since, until)`` of ``log_dir`` (both log
    there), with ``counts`` the change of their error counters over the same window and
    ``fault`` what the target reports wrong with the candidate (exited, restarted)."""
    import numpy as np

    if mode not in (SHADOW, CANARY):
        raise InvalidParameter(f"an analysis is of a shadow or a canary, not {mode!r}")
    table = read_window(log_dir, since, until)
    primary = _rows(table, PRIMARY, primary_version)
    candidate = _rows(table, mode, candidate_version)
    n_p = primary.num_rows if primary is not None else 0
    n_c = candidate.num_rows if candidate is not None else 0
    t = thresholds
    results: list[CheckResult] = []
    add = results.append

    if fault is not None:
        add(CheckResult("candidate health", None, None, "running", False, fault))
    c_total = n_c + counts.candidate_errors + counts.unreachable
    enough = c_total >= t.min_requests
    add(
        CheckResult(
            "requests",
            c_total,
            float(n_p + counts.primary_errors),
            f">= {t.min_requests}",
            enough,
            f"{c_total:.0f} candidate requests" + ("" if enough else f", {t.min_requests} needed"),
        )
    )
    c_rate = (counts.candidate_errors + counts.unreachable) / c_total if c_total else 0.0
    p_total = n_p + counts.primary_errors
    p_rate = counts.primary_errors / p_total if p_total else 0.0
    limit = p_rate + t.max_error_rate_increase
    ok = c_rate <= limit
    add(
        CheckResult(
            "error rate",
            c_rate,
            p_rate,
            f"<= primary + {t.max_error_rate_increase:g}",
            ok,
            f"{c_rate:.2%} vs {p_rate:.2%} ({counts.candidate_errors:.0f} 5xx, "
            f"{counts.unreachable:.0f} no answer)",
        )
    )
    c_p99 = _p99(candidate)
    p_p99 = _p99(primary)
    if c_p99 is None or p_p99 is None:
        add(CheckResult("p99 latency ms", c_p99, p_p99, "", None, "no answers to compare"))
    else:
        bound = p_p99 * t.max_latency_p99_ratio + t.latency_p99_slack_ms
        add(
            CheckResult(
                "p99 latency ms",
                c_p99,
                p_p99,
                f"<= primary x {t.max_latency_p99_ratio:g} + {t.latency_p99_slack_ms:g}",
                c_p99 <= bound,
                f"{c_p99:.1f} vs {p_p99:.1f} ms (limit {bound:.1f})",
            )
        )
    if mode == SHADOW:
        agreement, pairs = _agreement(primary, candidate, t.agreement_tolerance)
        if agreement is None:
            add(CheckResult("agreement", None, None, "", None, "no request answered by both"))
        else:
            add(
                CheckResult(
                    "agreement",
                    agreement,
                    None,
                    f">= {t.min_agreement:g}",
                    agreement >= t.min_agreement,
                    f"{agreement:.1%} of {pairs} rows answered alike",
                )
            )
    distance, kind = _distance(primary, candidate)
    if distance is None:
        add(CheckResult("prediction distance", None, None, "", None, "no predictions to compare"))
    else:
        add(
            CheckResult(
                "prediction distance",
                distance,
                None,
                f"<= {t.max_prediction_distance:g}",
                distance <= t.max_prediction_distance,
                f"{kind}: {distance:.3f}",
            )
        )
    results.append(_quality(log_dir, primary, candidate, t))
    del np
    return Analysis(
        mode, since.isoformat(), until.isoformat(), int(c_total), int(p_total), tuple(results)
    )


def _p99(table: pa.Table | None) -> float | None:
    import numpy as np

    if table is None or not table.num_rows:
        return None
    return float(np.percentile(table.column("latency_ms").to_numpy(), 99))


def _output_rows(raw: str, rows: int) -> list[Any] | None:
    import orjson

    value = orjson.loads(raw)
    if isinstance(value, dict):  # named outputs: the first without prob/score in its name
        keys = list(value)
        key = next(
            (k for k in keys if "prob" not in k and "score" not in k), keys[0] if keys else None
        )
        value = value.get(key) if key is not None else None
    if isinstance(value, list) and len(value) == rows:
        return value
    if rows == 1:
        return [value[0] if isinstance(value, list) and len(value) == 1 else value]
    return None


def _answers(table: pa.Table) -> Any:
    """``(request_id, outputs JSON, rows)`` of each logged answer."""
    columns = (table.column(c).to_pylist() for c in ("request_id", "outputs", "rows"))
    return zip(*columns, strict=True)


def _same(a: Any, b: Any, tolerance: float) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return abs(float(a) - float(b)) <= tolerance * max(abs(float(a)), abs(float(b)), 1e-12)
    return bool(a == b)


def _agreement(
    primary: pa.Table | None, candidate: pa.Table | None, tolerance: float
) -> tuple[float | None, int]:
    if primary is None or candidate is None or not candidate.num_rows:
        return None, 0
    answers = {rid: (out, rows) for rid, out, rows in _answers(primary)}
    # A client chooses its x-request-id: one id on several requests pairs answers to different
    # inputs (a client could fail any shadow that way), so ids logged twice are not compared.
    reused = {
        rid
        for table in (primary, candidate)
        for rid, n in Counter(table.column("request_id").to_pylist()).items()
        if n > 1
    }
    same = total = 0
    for rid, out, rows in _answers(candidate):
        if rid not in answers or rid in reused:
            continue
        theirs = _output_rows(answers[rid][0], int(answers[rid][1]))
        ours = _output_rows(out, int(rows))
        if theirs is None or ours is None or len(theirs) != len(ours):
            total += int(rows)
            continue
        total += len(ours)
        same += sum(1 for a, b in zip(theirs, ours, strict=True) if _same(a, b, tolerance))
    return (same / total, total) if total else (None, 0)


def _predictions(table: pa.Table | None) -> list[Any]:
    out: list[Any] = []
    if table is None:
        return out
    for _, raw, rows in _answers(table):
        values = _output_rows(raw, int(rows))
        if values is not None:
            out.extend(values)
    return out


def _distance(primary: pa.Table | None, candidate: pa.Table | None) -> tuple[float | None, str]:
    import numpy as np
    from scipy import stats

    a, b = _predictions(primary), _predictions(candidate)
    if not a or not b:
        return None, ""
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in a + b)
    if numbers:
        arr = np.asarray(a + b, dtype=np.float64)
        classes = np.all(arr == np.round(arr)) and len(np.unique(arr)) <= 20
        if not classes:
            return float(stats.ks_2samp(a, b).statistic), "Kolmogorov-Smirnov"
    keys = sorted({str(v) for v in a + b})
    pa_ = np.array([sum(1 for v in a if str(v) == k) for k in keys], dtype=float) / len(a)
    pb = np.array([sum(1 for v in b if str(v) == k) for k in keys], dtype=float) / len(b)
    return float(0.5 * np.abs(pa_ - pb).sum()), "total variation"


def _quality(
    log_dir: Path, primary: pa.Table | None, candidate: pa.Table | None, t: Thresholds
) -> CheckResult:
    from modelyard.monitor.quality import evaluate_quality, join_feedback
    from modelyard.monitor.windows import Window, read_labels

    if primary is None or candidate is None or not primary.num_rows or not candidate.num_rows:
        return CheckResult("quality", None, None, "", None, "no answers to compare")
    ids = primary.column("request_id").to_pylist() + candidate.column("request_id").to_pylist()
    labels = read_labels(log_dir, [str(i) for i in ids])
    reports = [
        evaluate_quality(join_feedback(Window(tbl), labels), min_labels=t.min_labels)
        for tbl in (candidate, primary)
    ]
    c_rep, p_rep = reports
    n = min(c_rep.n_labelled, p_rep.n_labelled)
    if not (c_rep.sufficient and p_rep.sufficient):
        return CheckResult(
            "quality", None, None, f">= {t.min_labels} labels", None,
            f"waiting for labels ({c_rep.n_labelled} and {p_rep.n_labelled} of "
            f"{t.min_labels})",
        )  # fmt: skip
    name = t.quality_metric or ("mae" if c_rep.task == "regression" else "accuracy")
    c_m, p_m = c_rep.metric(name), p_rep.metric(name)
    if c_m is None or p_m is None or c_m.value is None or p_m.value is None:
        return CheckResult(f"quality ({name})", None, None, "", None, f"no {name} on this task")
    lower = _QUALITY.get(name, False)
    if lower:
        ok = c_m.value <= p_m.value + t.max_quality_drop
        limit = f"<= primary + {t.max_quality_drop:g}"
    else:
        ok = c_m.value >= p_m.value - t.max_quality_drop
        limit = f">= primary - {t.max_quality_drop:g}"
    return CheckResult(
        f"quality ({name})", c_m.value, p_m.value, limit, ok,
        f"{c_m.value:.4f} vs {p_m.value:.4f} on {n}+ labels",
    )  # fmt: skip
