"""Availability: health probes and what each server's Prometheus ``/metrics`` says.

A check probes ``/v2/health/ready`` and scrapes ``/metrics`` of every base URL. Counters and
histogram buckets are cumulative since the server started, so rates and latency quantiles
describe the interval since ``previous`` (the last report) when one is given, else the server's
lifetime; a restarted server (counters went down) is read from zero. Latency quantiles are
interpolated within histogram buckets the way Prometheus' ``histogram_quantile`` does, over the
prediction routes only (``infer``/``invocations``), so health checks do not flatter latency.

Outages, error-rate and latency-objective breaches come back as :class:`AvailabilityEvent`
values; storing and acting on them is the caller's business.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from modelyard import image_contract as contract

# (url, timeout seconds) -> (HTTP status, body). Raises OSError when nothing answers.
Fetch = Callable[[str, float], tuple[int, bytes]]

REQUESTS = "modelyard_requests"
LATENCY = "modelyard_request_duration_seconds"
PREDICTION_ROUTES = ("infer", "invocations")
QUANTILES = (0.5, 0.95, 0.99)


@dataclass(frozen=True)
class MetricsSnapshot:
    """Cumulative prediction-route counters of one scrape: requests, 5xx answers, and latency
    histogram buckets (upper bound in seconds → cumulative count)."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: tuple[tuple[float, float], ...] = ()


@dataclass(frozen=True)
class EndpointStatus:
    url: str
    ready: bool
    status: int | None
    error: str | None
    probe_ms: float | None
    requests: float = 0.0
    errors: float = 0.0
    error_rate: float | None = None
    latency_ms: Mapping[str, float] = field(default_factory=dict)
    snapshot: MetricsSnapshot | None = None
    window: MetricsSnapshot | None = None  # the interval's counts (snapshot minus previous)


@dataclass(frozen=True)
class AvailabilityEvent:
    kind: str  # "outage" | "error_rate" | "latency"
    url: str
    message: str
    value: float | None = None
    threshold: float | None = None


@dataclass(frozen=True)
class AvailabilityReport:
    checked_at: dt.datetime
    endpoints: tuple[EndpointStatus, ...]
    events: tuple[AvailabilityEvent, ...]

    @property
    def healthy(self) -> bool:
        return not self.events

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["checked_at"] = self.checked_at.isoformat()
        for e in doc["endpoints"]:
            e["latency_ms"] = dict(e["latency_ms"])
            for key in ("snapshot", "window"):
                if e.get(key) is not None:
                    e[key]["buckets"] = [list(b) for b in e[key]["buckets"]]
        return _finite(doc)  # type: ignore[no-any-return]

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AvailabilityReport:
        endpoints = []
        for e in data["endpoints"]:
            snaps = {key: _snapshot(e.get(key)) for key in ("snapshot", "window")}
            endpoints.append(EndpointStatus(**{**e, **snaps}))
        return cls(
            dt.datetime.fromisoformat(data["checked_at"]),
            tuple(endpoints),
            tuple(AvailabilityEvent(**e) for e in data["events"]),
        )


def _snapshot(doc: Mapping[str, Any] | None) -> MetricsSnapshot | None:
    if not doc:
        return None
    buckets = tuple((_inf(b[0]), float(b[1])) for b in doc["buckets"])
    return MetricsSnapshot(doc["requests"], doc["errors"], buckets)


def _inf(v: Any) -> float:
    return float("inf") if v is None else float(v)


def _finite(value: Any) -> Any:
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _urllib_fetch(url: str, timeout: float) -> tuple[int, bytes]:
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as exc:
        return int(exc.code), exc.read()
    except urllib.error.URLError as exc:
        raise OSError(str(exc.reason)) from exc


def parse_metrics(text: str, routes: Sequence[str] = PREDICTION_ROUTES) -> MetricsSnapshot:
    """Sum modelyard's request counter and latency histogram over routes whose template
    contains one of ``routes``."""
    from prometheus_client.parser import text_string_to_metric_families

    requests = errors = 0.0
    buckets: dict[float, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            route = sample.labels.get("route", "")
            if not any(r in route for r in routes):
                continue
            if sample.name == f"{REQUESTS}_total":
                requests += sample.value
                if sample.labels.get("status", "").startswith("5"):
                    errors += sample.value
            elif sample.name == f"{LATENCY}_bucket":
                le = float(sample.labels["le"])
                buckets[le] = buckets.get(le, 0.0) + sample.value
    return MetricsSnapshot(requests, errors, tuple(sorted(buckets.items())))


def _delta(now: MetricsSnapshot, before: MetricsSnapshot | None) -> MetricsSnapshot:
    if before is None or now.requests < before.requests:  # no baseline, or a restart
        return now
    old = dict(before.buckets)
    return MetricsSnapshot(
        now.requests - before.requests,
        now.errors - before.errors,
        tuple((le, c - old.get(le, 0.0)) for le, c in now.buckets),
    )


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative ``(upper bound, count)`` buckets."""
    if not buckets or buckets[-1][1] <= 0:
        return None
    total = buckets[-1][1]
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            if upper == float("inf"):
                return lower  # the highest finite bound: all Prometheus can say
            span = count - below
            return lower + (upper - lower) * ((rank - below) / span if span else 1.0)
        lower, below = upper, count
    return lower


def _probe(
    url: str,
    fetch: Fetch,
    timeout: float,
    previous: EndpointStatus | None,
    routes: Sequence[str],
    quantiles: Sequence[float],
) -> EndpointStatus:
    base = url.rstrip("/")
    started = time.perf_counter()
    try:
        status, _ = fetch(f"{base}{contract.READY_PATH}", timeout)
    except OSError as exc:
        return EndpointStatus(url, False, None, f"unreachable: {exc}", None)
    probe_ms = (time.perf_counter() - started) * 1000.0
    ready = status == 200
    error = None if ready else f"{contract.READY_PATH} answered {status}"
    try:
        m_status, body = fetch(f"{base}/metrics", timeout)
    except OSError as exc:
        return EndpointStatus(url, ready, status, error or f"/metrics unreachable: {exc}", probe_ms)
    if m_status != 200:
        return EndpointStatus(url, ready, status, error, probe_ms)
    snapshot = parse_metrics(body.decode("utf-8", "replace"), routes)
    delta = _delta(snapshot, previous.snapshot if previous else None)
    latency = {}
    for q in quantiles:
        value = histogram_quantile(q, delta.buckets)
        if value is not None:
            latency[f"p{round(q * 100)}"] = value * 1000.0
    return EndpointStatus(
        url,
        ready,
        status,
        error,
        probe_ms,
        requests=delta.requests,
        errors=delta.errors,
        error_rate=delta.errors / delta.requests if delta.requests else None,
        latency_ms=latency,
        snapshot=snapshot,
        window=delta,
    )


@dataclass(frozen=True)
class Totals:
    """A service's traffic over all its replicas: each replica's interval counts summed, and the
    latency quantiles of the summed histogram (quantiles of parts cannot be averaged)."""

    requests: float
    errors: float
    error_rate: float | None
    latency_ms: Mapping[str, float]


def totals(report: AvailabilityReport, quantiles: Sequence[float] = QUANTILES) -> Totals:
    requests = errors = 0.0
    buckets: dict[float, float] = {}
    for endpoint in report.endpoints:
        if endpoint.window is None:
            continue
        requests += endpoint.window.requests
        errors += endpoint.window.errors
        for le, count in endpoint.window.buckets:
            buckets[le] = buckets.get(le, 0.0) + count
    merged = sorted(buckets.items())
    latency = {}
    for q in quantiles:
        value = histogram_quantile(q, merged)
        if value is not None:
            latency[f"p{round(q * 100)}"] = value * 1000.0
    return Totals(requests, errors, errors / requests if requests else None, latency)


def check_availability(
    urls: Sequence[str],
    *,
    latency_objective_ms: float | None = None,
    latency_quantile: float = 0.99,
    max_error_rate: float | None = None,
    previous: AvailabilityReport | None = None,
    timeout: float = 2.0,
    routes: Sequence[str] = PREDICTION_ROUTES,
    fetch: Fetch | None = None,
    now: dt.datetime | None = None,
) -> AvailabilityReport:
    """Probe each server base URL once. An endpoint not ready (or unreachable) is an
    ``outage`` event; the ``latency_quantile`` above ``latency_objective_ms`` a ``latency``
    event; the share of 5xx answers above ``max_error_rate`` an ``error_rate`` event.
    ``fetch`` replaces the HTTP client (tests, or an authenticated one)."""
    fetch = fetch or _urllib_fetch
    before = {e.url: e for e in previous.endpoints} if previous else {}
    key = f"p{round(latency_quantile * 100)}"
    endpoints = []
    events = []
    for url in urls:
        status = _probe(
            url, fetch, timeout, before.get(url), routes, sorted({*QUANTILES, latency_quantile})
        )
        endpoints.append(status)
        if not status.ready:
            events.append(AvailabilityEvent("outage", url, status.error or "not ready"))
        rate = status.error_rate
        if max_error_rate is not None and rate is not None and rate > max_error_rate:
            events.append(
                AvailabilityEvent(
                    "error_rate",
                    url,
                    f"{rate:.1%} of {status.requests:g} requests failed (limit "
                    f"{max_error_rate:.1%})",
                    rate,
                    max_error_rate,
                )
            )
        value_ms = status.latency_ms.get(key)
        if (
            latency_objective_ms is not None
            and value_ms is not None
            and (value_ms > latency_objective_ms)
        ):
            events.append(
                AvailabilityEvent(
                    "latency",
                    url,
                    f"{key} latency {value_ms:.1f} ms over the {latency_objective_ms:g} ms "
                    "objective",
                    value_ms,
                    latency_objective_ms,
                )
            )
    return AvailabilityReport(now or dt.datetime.now(dt.UTC), tuple(endpoints), tuple(events))
