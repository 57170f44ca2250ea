"""Reports: the self-contained HTML file, terminal tables, and availability from /metrics."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from modelyard.monitor import (
    AvailabilityReport,
    LabelledWindow,
    Reference,
    WindowInfo,
    check_availability,
    detect_drift,
    evaluate_quality,
    render_availability,
    render_drift,
    render_quality,
    write_html_report,
)
from modelyard.serving.metrics import Metrics


def _reports() -> list:  # type: ignore[type-arg]
    rng = np.random.default_rng(0)
    ref = Reference.from_columns(
        {
            "tenure<days>": rng.normal(0, 1, 3000),
            "plan": rng.choice(["a", "b"], 3000).astype(object),
        },
        source="churn@3",
    )
    out = []
    for i, shift in enumerate((0.0, 0.1, 1.0)):
        start = dt.datetime(2026, 1, 1, i, tzinfo=dt.UTC)
        info = WindowInfo(start, start + dt.timedelta(minutes=59), 500, 500)
        out.append(
            detect_drift(
                ref,
                {
                    "tenure<days>": rng.normal(shift, 1, 500),
                    "plan": ["a"] * 250 + ["b"] * 249 + ["zz"],
                },
                window=info,
            )
        )
    return out


def test_html_report_is_self_contained_and_names_every_feature(tmp_path: Path) -> None:
    drift = _reports()
    assert drift[-1].drifted
    quality = [
        evaluate_quality(
            LabelledWindow(np.r_[np.ones(150), np.zeros(150)], np.r_[np.ones(140), np.zeros(160)]),
            min_labels=100,
        )
    ]
    path = write_html_report(
        tmp_path / "report.html",
        drift=drift,
        quality=quality,
        decisions=[{"at": "2026-01-01T03:00", "action": "retrain", "reason": "<drift share 0.5>"}],
    )
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>")
    urls = set(re.findall(r"https?://[^\s\"'<>]+", text))
    assert urls == {"http://www.w3.org/2000/svg"}  # only the SVG namespace
    assert "<script" not in text
    assert "<link" not in text
    assert "tenure&lt;days&gt;" in text
    assert "plan" in text
    assert "DRIFTED" in text
    assert "Drift over time" in text
    assert "Quality over time" in text
    assert "&lt;drift share 0.5&gt;" in text
    assert "retrain" in text
    assert text.count("<svg") >= 5  # 2 distributions + drift line + quality lines
    assert "zz" in text  # the new-category finding


def test_terminal_rendering_shows_verdict_features_and_findings() -> None:
    console = Console(record=True, width=140)
    report = _reports()[-1]
    console.print(render_drift(report))
    out = console.export_text()
    assert "DRIFTED" in out
    assert "1 of 2 features" in out
    assert "tenure<days>" in out
    assert "new_category" in out
    console.print(render_quality(evaluate_quality(LabelledWindow([1, 0], [1, 1]), min_labels=10)))
    assert "no verdict below 10 labels" in console.export_text()


def _fake_server(metrics: Metrics, ready: int = 200):  # type: ignore[no-untyped-def]
    def fetch(url: str, timeout: float) -> tuple[int, bytes]:
        if url.startswith("http://down"):
            raise OSError("connection refused")
        if url.endswith("/v2/health/ready"):
            return ready, b"{}"
        return 200, metrics.render()[0]

    return fetch


def test_availability_reads_error_rate_and_latency_from_prometheus_metrics() -> None:
    metrics = Metrics("m", "1", "sklearn")
    for _ in range(90):
        metrics.observe("/v2/models/{name}/infer", 200, 0.004)
    for _ in range(10):
        metrics.observe("/v2/models/{name}/infer", 500, 0.2)
    for _ in range(50):
        metrics.observe("/v2/health/ready", 200, 0.00001)  # not counted
    fetch = _fake_server(metrics)
    report = check_availability(
        ["http://up:8080", "http://down:8080"],
        latency_objective_ms=50,
        max_error_rate=0.05,
        fetch=fetch,
    )
    up, down = report.endpoints
    assert up.ready
    assert up.requests == 100
    assert up.errors == 10
    assert up.error_rate == pytest.approx(0.1)
    assert up.latency_ms["p50"] == pytest.approx(3.75, abs=0.5)  # inside the 2.5–5 ms bucket
    assert up.latency_ms["p99"] > 50
    assert not down.ready
    assert down.error is not None
    assert "unreachable" in down.error
    kinds = sorted((e.kind, e.url) for e in report.events)
    assert kinds == [
        ("error_rate", "http://up:8080"),
        ("latency", "http://up:8080"),
        ("outage", "http://down:8080"),
    ]
    # The next check only looks at what happened since: 100 fast, good requests.
    for _ in range(100):
        metrics.observe("/v2/models/{name}/infer", 200, 0.003)
    again = check_availability(
        ["http://up:8080"],
        latency_objective_ms=50,
        max_error_rate=0.05,
        previous=report,
        fetch=fetch,
    )
    assert again.endpoints[0].requests == 100
    assert again.endpoints[0].error_rate == 0
    assert again.events == ()
    assert AvailabilityReport.from_dict(report.to_dict()) == report
    console = Console(record=True, width=140)
    console.print(render_availability(report))
    assert "outage" in console.export_text()
