"""Drift detectors, windows over the prediction log, and the reference from a dataset."""

from __future__ import annotations

import datetime as dt
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelyard.errors import InvalidParameter
from modelyard.monitor import (
    DriftConfig,
    DriftReport,
    Reference,
    detect_drift,
    iter_windows,
    latest_window,
    load_reference,
    prediction_drift,
    read_labels,
)
from modelyard.serving.predlog import FEEDBACK, PREDICTIONS, SegmentLog


def _reference(rng: np.random.Generator, rows: int = 5000) -> Reference:
    return Reference.from_columns(
        {
            "x": rng.normal(10.0, 2.0, rows),
            "y": rng.uniform(0, 1, rows),
            "plan": rng.choice(np.array(["basic", "pro", "team"], dtype=object), rows),
        },
        source="train@1",
    )


def test_no_drift_when_window_comes_from_the_reference_distribution() -> None:
    rng = np.random.default_rng(11)
    ref = _reference(rng)
    current = {
        "x": rng.normal(10.0, 2.0, 800),
        "y": rng.uniform(0, 1, 800),
        "plan": rng.choice(np.array(["basic", "pro", "team"], dtype=object), 800),
    }
    report = detect_drift(ref, current)
    assert not report.drifted
    assert report.n_drifted == 0
    assert report.drift_share == 0.0
    x = report.feature("x")
    assert x.test == "ks"
    assert x.p_value is not None
    assert x.p_value > 0.01
    assert x.psi is not None
    assert x.psi_threshold is not None
    assert x.psi < x.psi_threshold
    assert report.feature("plan").test == "chi2"
    assert report.findings == ()


def test_shift_in_one_numeric_feature_is_flagged_with_effect_sizes() -> None:
    rng = np.random.default_rng(2)
    ref = _reference(rng)
    current = {
        "x": rng.normal(11.0, 2.0, 1000),  # +0.5 std
        "y": rng.uniform(0, 1, 1000),
        "plan": rng.choice(np.array(["basic", "pro", "team"], dtype=object), 1000),
    }
    report = detect_drift(ref, current)
    assert report.drifted
    assert report.drifted_features == ["x"]
    x = report.feature("x")
    assert x.wasserstein == pytest.approx(0.5, abs=0.1)  # in reference standard deviations
    assert x.psi is not None
    assert x.psi_threshold is not None
    assert x.psi > x.psi_threshold
    assert report.drift_share == pytest.approx(1 / 3)


def test_category_shift_new_category_and_out_of_range_are_reported() -> None:
    rng = np.random.default_rng(3)
    ref = _reference(rng)
    plan = rng.choice(np.array(["basic", "pro"], dtype=object), 600, p=[0.2, 0.8]).tolist()
    plan[:3] = ["enterprise"] * 3
    current = {"x": np.r_[rng.normal(10.0, 2.0, 597), [100.0, 200.0, -50.0]], "plan": plan}
    report = detect_drift(ref, current)
    assert report.feature("plan").drifted
    js = report.feature("plan")
    assert js.js_distance is not None
    assert js.js_threshold is not None
    assert js.js_distance > js.js_threshold
    kinds = {(f.feature, f.kind): f for f in report.findings}
    assert kinds[("plan", "new_category")].examples == ("enterprise",)
    assert kinds[("plan", "new_category")].count == 3
    assert kinds[("x", "out_of_range")].count == 3
    assert ("y", "missing_feature") in kinds


def test_small_windows_are_not_tested_but_new_categories_still_reported() -> None:
    ref = _reference(np.random.default_rng(4))
    report = detect_drift(ref, {"x": [10.0, 11.0], "y": [0.5, 0.2], "plan": ["gold"]})
    assert not report.drifted
    assert all(f.p_value is None for f in report.features)
    assert [f.kind for f in report.findings] == ["new_category"]


def test_report_round_trips_through_json() -> None:
    rng = np.random.default_rng(5)
    ref = _reference(rng)
    report = detect_drift(
        ref,
        {"x": [None, *rng.normal(12, 2, 300)], "y": rng.uniform(0, 1, 300), "plan": ["x"] * 300},
        config=DriftConfig(alpha=0.05),
    )
    doc = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    back = DriftReport.from_dict(doc)
    assert back == report
    assert doc["features"][0]["missing_share"] == pytest.approx(1 / 301)


def test_config_is_validated() -> None:
    with pytest.raises(InvalidParameter, match="correction"):
        DriftConfig(correction="magic")
    with pytest.raises(InvalidParameter, match="alpha"):
        DriftConfig(alpha=1.5)


def test_prediction_drift_treats_class_labels_as_categories() -> None:
    rng = np.random.default_rng(6)
    baseline = {"prediction": rng.choice([0, 1], 2000, p=[0.7, 0.3])}
    same = prediction_drift(baseline, {"prediction": rng.choice([0, 1], 500, p=[0.7, 0.3])})
    moved = prediction_drift(baseline, {"prediction": rng.choice([0, 1], 500, p=[0.3, 0.7])})
    assert same.kind == "prediction"
    assert not same.drifted
    assert moved.drifted
    assert moved.feature("prediction").kind == "categorical"


# ---- windows over a real prediction log ------------------------------------------------------


def _write_log(folder: Path, records: list[tuple[Any, ...]], kind: str = PREDICTIONS) -> None:
    """Write through the server's own log writer, a few records per drain, so the log spans
    several rotated segments."""
    log = SegmentLog(
        folder,
        kind,
        segment_bytes=1_000,
        segment_seconds=60,
    )
    log.start()
    for i in range(0, len(records), 4):
        for record in records[i : i + 4]:
            log.put(record)
        deadline = time.monotonic() + 10
        while log.written < min(i + 4, len(records)) and time.monotonic() < deadline:
            time.sleep(0.005)
    log.close()


def _requests(n: int, start: dt.datetime, step: dt.timedelta) -> list[tuple[Any, ...]]:
    out = []
    for i in range(n):
        t = start + i * step
        ns = int(t.timestamp() * 1e9)
        out.append(
            (
                f"r{i}",
                ns,
                "m",
                "1",
                "v2",
                {"x": [float(i), float(i)], "plan": ["a", "b"]},
                [i % 2, 1],
                0.001,
                2,
            )
        )
    return out


def test_windows_by_requests_and_by_span_stream_the_log(tmp_path: Path) -> None:
    start = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    _write_log(tmp_path, _requests(25, start, dt.timedelta(minutes=10)))
    assert len(list((tmp_path / PREDICTIONS).glob("*.arrows"))) > 1  # several segments
    by_count = list(iter_windows(tmp_path, requests=10))
    assert [w.info.requests for w in by_count] == [10, 10, 5]
    assert [w.info.rows for w in by_count] == [20, 20, 10]
    inputs = by_count[1].inputs()
    assert inputs["x"].tolist()[:4] == [10.0, 10.0, 11.0, 11.0]
    assert by_count[0].outputs()["prediction"].tolist()[:4] == [0, 1, 1, 1]
    hourly = list(iter_windows(tmp_path, span=dt.timedelta(hours=1), partial=False))
    assert [w.info.requests for w in hourly] == [6, 6, 6, 6]  # the last, partial hour dropped
    assert hourly[1].info.start == start + dt.timedelta(hours=1)
    last = latest_window(tmp_path, requests=7)
    assert last is not None
    assert last.request_ids == [f"r{i}" for i in range(18, 25)]
    recent = latest_window(
        tmp_path, span=dt.timedelta(minutes=30), until=start + dt.timedelta(minutes=241)
    )
    assert recent is not None
    assert recent.request_ids == ["r22", "r23", "r24"]
    with pytest.raises(InvalidParameter):
        list(iter_windows(tmp_path))


def test_read_labels_keeps_only_the_requested_ids(tmp_path: Path) -> None:
    _write_log(
        tmp_path,
        [("r1", 1, "m", "1", [1, 0]), ("r2", 2, "m", "1", 1), ("r1", 3, "m", "1", [0, 0])],
        FEEDBACK,
    )
    assert read_labels(tmp_path, ["r1", "zzz"]) == {"r1": [0, 0]}  # the later label wins


def test_reference_from_a_dataset_profile(workspace: Any, tmp_path: Path) -> None:
    from modelyard.data import add

    rng = np.random.default_rng(7)
    csv = tmp_path / "train.csv"
    rows = ["x,plan,label"] + [
        f"{v:.4f},{p},{int(v > 0)}"
        for v, p in zip(rng.normal(0, 1, 3000), rng.choice(["a", "b"], 3000), strict=True)
    ]
    csv.write_text("\n".join(rows) + "\n")
    add(csv, name="train", workspace=workspace)
    ref = load_reference(dataset="train@1", features=["x", "plan"], workspace=workspace)
    assert ref.source == "train@1"
    assert ref.names == ["x", "plan"]
    x = ref.feature("x")
    assert x.kind == "numeric"
    assert len(x.values) == 3000
    assert x.std == pytest.approx(1.0, abs=0.1)
    assert set(ref.feature("plan").counts) == {"a", "b"}
    report = detect_drift(ref, {"x": rng.normal(1.0, 1.0, 500), "plan": ["a"] * 500})
    assert report.drifted_features == ["x", "plan"]


@pytest.mark.parametrize("rows", [2000, 200_000])
def test_numeric_statistics_from_one_sort_equal_scipys_and_numpys(rows: int) -> None:
    """KS, PSI bins, chart bins, quantiles and findings come from one sorted copy of the
    window; they must be what scipy's ks_2samp, np.histogram and np.bincount give on the raw
    window — with ties (rounded values shared with the reference), NaN, ±Infinity and values
    outside the reference range."""
    from scipy import stats

    rng = np.random.default_rng(rows)
    ref_values = np.round(rng.normal(0.0, 1.0, 10_000), 2)
    reference = Reference.from_columns({"x": ref_values}, source="ref")
    window = np.round(rng.normal(0.1, 1.2, rows), 2)
    window[rng.integers(rows, size=rows // 50)] = np.nan
    window[:3] = [np.inf, -np.inf, 99.0]
    feature = detect_drift(reference, {"x": window}).feature("x")

    ref = reference.feature("x").values
    finite = window[np.isfinite(window)]
    expected = stats.ks_2samp(ref, finite, method="asymp")
    assert feature.statistic == expected.statistic  # bit for bit
    assert feature.p_value == pytest.approx(float(expected.pvalue), rel=1e-12, abs=1e-300)
    edges = np.asarray(feature.bins)
    view, _ = np.histogram(np.clip(finite, edges[0], edges[-1]), bins=edges)
    assert np.allclose(feature.current_share, view / len(finite))
    ref_view, _ = np.histogram(np.clip(ref, edges[0], edges[-1]), bins=edges)
    assert np.allclose(feature.reference_share, ref_view / len(ref))
    inner, ref_counts = reference.feature("x").psi_edges
    counts = np.bincount(np.searchsorted(inner, finite, side="right"), minlength=len(inner) + 1)
    p_ref = (ref_counts + 0.5) / (ref_counts.sum() + 0.5 * len(ref_counts))
    p_cur = (counts + 0.5) / (counts.sum() + 0.5 * len(counts))
    psi = stats.entropy(p_cur, p_ref) + stats.entropy(p_ref, p_cur)
    assert feature.psi == pytest.approx(psi, rel=1e-12)
    grid = (np.arange(1000) + 0.5) / 1000
    ordered = np.sort(finite)
    w1 = (
        stats.wasserstein_distance(
            ref[(grid * len(ref)).astype(np.int64)],
            ordered[(grid * len(ordered)).astype(np.int64)],
        )
        / reference.feature("x").scale
    )
    assert feature.wasserstein == pytest.approx(w1, rel=1e-12)
    assert feature.missing_share == pytest.approx(np.isnan(window).mean())
    report = detect_drift(reference, {"x": window})
    (out_of_range,) = [f for f in report.findings if f.kind == "out_of_range"]
    present = window[~np.isnan(window)]
    below = int((present < ref.min()).sum())
    above = int((present > ref.max()).sum())
    assert out_of_range.count == below + above
    assert out_of_range.examples == (f"min {present.min():g}", f"max {present.max():g}")
