"""Quality from feedback: metrics, intervals, the minimum sample rule, and the log join."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from modelyard.monitor import (
    LabelledWindow,
    QualityReport,
    evaluate_quality,
    join_feedback,
    latest_window,
    read_labels,
)
from modelyard.serving.predlog import FEEDBACK, PREDICTIONS, SegmentLog


def _binary(n: int, seed: int = 0) -> LabelledWindow:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    score = np.clip(y * 0.6 + rng.uniform(0, 0.4, n), 0, 1)  # informative, imperfect
    pred = (score > 0.5).astype(int)
    flip = rng.random(n) < 0.1
    pred[flip] = 1 - pred[flip]
    return LabelledWindow(y, pred, score, n_predictions=n * 2)


def test_classification_metrics_with_intervals() -> None:
    report = evaluate_quality(_binary(400))
    assert report.task == "classification"
    assert report.sufficient
    assert report.n_labelled == 400
    assert report.n_predictions == 800
    acc = report.metric("accuracy")
    assert acc is not None
    assert acc.method == "wilson"
    assert acc.value == pytest.approx(0.9, abs=0.04)
    assert acc.low is not None
    assert acc.high is not None
    assert acc.low < acc.value < acc.high
    assert acc.high - acc.low < 0.08
    for name in ("f1", "roc_auc", "brier", "ece"):
        m = report.metric(name)
        assert m is not None, name
        assert m.value is not None, name
        assert m.method == "bootstrap", name
        assert m.low is not None, name
        assert m.high is not None, name
        assert m.low <= m.value <= m.high, name
    auc = report.metric("roc_auc")
    assert auc is not None
    assert auc.value == pytest.approx(1.0, abs=0.01)
    assert report.below("accuracy", 0.95) is True
    assert report.below("accuracy", 0.85) is False


def test_regression_metrics() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(50, 10, 300)
    pred = y + rng.normal(0, 2, 300)
    report = evaluate_quality(LabelledWindow(y, pred))
    assert report.task == "regression"
    mae, rmse, r2 = (report.metric(n) for n in ("mae", "rmse", "r2"))
    assert mae is not None
    assert mae.value == pytest.approx(1.6, abs=0.3)
    assert rmse is not None
    assert rmse.value == pytest.approx(2.0, abs=0.3)
    assert r2 is not None
    assert r2.value is not None
    assert r2.value > 0.95


def test_no_verdict_below_the_minimum_number_of_labels() -> None:
    report = evaluate_quality(_binary(40), min_labels=200)
    assert not report.sufficient
    assert report.n_labelled == 40
    assert report.metric("accuracy") is not None  # still shown, with its wide interval
    assert report.below("accuracy", 0.99) is None
    assert report.above("accuracy", 0.0) is None


def test_report_round_trips_through_json() -> None:
    report = evaluate_quality(_binary(150))
    doc = json.loads(json.dumps(report.to_dict(), allow_nan=False))
    assert QualityReport.from_dict(doc) == report


def _log(folder: Path, kind: str, records: list[tuple[object, ...]]) -> None:
    log = SegmentLog(folder, kind, segment_bytes=1 << 20, segment_seconds=60)
    log.start()
    for r in records:
        log.put(r)
    log.close()


def test_feedback_joins_predictions_by_request_id(tmp_path: Path) -> None:
    preds = [
        (
            "a",
            1,
            "m",
            "1",
            "v2",
            {"x": [1, 2]},
            {"label": [1, 0], "probability": [[0.2, 0.8], [0.9, 0.1]]},
            0.001,
            2,
        ),
        ("b", 2, "m", "1", "v2", {"x": [3]}, {"label": [1], "probability": [[0.3, 0.7]]}, 0.001, 1),
        ("c", 3, "m", "1", "v2", {"x": [4]}, {"label": [0], "probability": [[0.6, 0.4]]}, 0.001, 1),
    ]
    _log(tmp_path, PREDICTIONS, preds)
    _log(tmp_path, FEEDBACK, [("a", 5, "m", "1", [1, 1]), ("b", 6, "m", "1", 0)])
    window = latest_window(tmp_path, requests=10)
    assert window is not None
    labelled = join_feedback(window, read_labels(tmp_path, window.request_ids))
    assert labelled.y_true.tolist() == [1, 1, 0]
    assert labelled.y_pred.tolist() == [1, 0, 1]
    assert labelled.y_score is not None
    assert labelled.y_score.tolist() == [0.8, 0.1, 0.7]
    assert labelled.n_predictions == 4
    report = evaluate_quality(labelled, min_labels=1)
    acc = report.metric("accuracy")
    assert acc is not None
    assert acc.value == pytest.approx(1 / 3)
