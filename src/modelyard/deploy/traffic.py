"""What a running service is doing, from its replicas' Prometheus ``/metrics``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from modelyard import image_contract as contract
from modelyard.deploy.probe import get_json, get_text

REQUESTS = "modelyard_requests"
LATENCY = "modelyard_request_duration_seconds"
PREDICT_ROUTES = ("infer", "invocations", "predict")


@dataclass(frozen=True)
class ReplicaHealth:
    address: str  # base URL
    ready: bool
    version: str | None


@dataclass(frozen=True)
class TrafficStats:
    """Totals since the replicas started: request and error counts, latency quantiles (from
    the histogram buckets, so as precise as the buckets), and the mean request rate."""

    requests: float
    errors: float
    p50_s: float | None
    p99_s: float | None

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def replica_health(base_url: str, name: str) -> ReplicaHealth:
    ready = get_json(f"{base_url}{contract.READY_PATH}") is not None
    meta = get_json(f"{base_url}/v2/models/{name}") if ready else None
    versions = meta.get("versions") if isinstance(meta, dict) else None
    return ReplicaHealth(base_url, ready, str(versions[0]) if versions else None)


def scrape(base_urls: Iterable[str]) -> TrafficStats:
    """Sum the request counters and latency histograms of every replica."""
    texts = [t for t in (get_text(f"{u}/metrics") for u in base_urls) if t is not None]
    return traffic_from_metrics(texts)


def traffic_from_metrics(texts: Sequence[str]) -> TrafficStats:
    from prometheus_client.parser import text_string_to_metric_families

    requests = errors = 0.0
    buckets: dict[float, float] = {}
    for text in texts:
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                route = sample.labels.get("route", "")
                if route and not any(k in route for k in PREDICT_ROUTES):
                    continue  # probes and scrapes are not traffic
                if family.name == REQUESTS and sample.name == f"{REQUESTS}_total":
                    requests += sample.value
                    if sample.labels.get("status", "").startswith("5"):
                        errors += sample.value
                elif family.name == LATENCY and sample.name == f"{LATENCY}_bucket":
                    le = float(sample.labels["le"])
                    buckets[le] = buckets.get(le, 0.0) + sample.value
    return TrafficStats(requests, errors, _quantile(buckets, 0.5), _quantile(buckets, 0.99))


def _quantile(buckets: dict[float, float], q: float) -> float | None:
    """The upper bound of the first bucket holding the ``q`` quantile (Prometheus style)."""
    if not buckets:
        return None
    ordered = sorted(buckets.items())
    total = ordered[-1][1]
    if total <= 0:
        return None
    for bound, count in ordered:
        if count >= q * total:
            return bound if bound != float("inf") else ordered[-2][0] if len(ordered) > 1 else None
    return None
