"""The detectors are calibrated: few false alarms without drift, reliable detection with it.

Seeds are independent windows of 1,000 rows × 30 standard-normal features against one
10,000-row reference sample (the profile's sample budget), judged by the real ``detect_drift``.
"""

from __future__ import annotations

import numpy as np
import pytest

from modelyard.monitor import Reference, detect_drift

FEATURES = 30
ROWS = 1000
SEEDS = 100


@pytest.fixture(scope="module")
def reference() -> Reference:
    rng = np.random.default_rng(12345)
    return Reference.from_columns(
        {f"f{i}": rng.normal(size=10_000) for i in range(FEATURES)}, source="ref"
    )


def _window(seed: int) -> dict[str, np.ndarray]:
    matrix = np.random.default_rng(seed).normal(size=(FEATURES, ROWS))
    return {f"f{i}": matrix[i] for i in range(FEATURES)}


@pytest.mark.slow
def test_false_alarm_rate_without_drift_is_at_most_5_percent(reference: Reference) -> None:
    alarms = sum(detect_drift(reference, _window(seed)).drifted for seed in range(SEEDS))
    assert alarms / SEEDS <= 0.05, f"{alarms} false alarms in {SEEDS} windows"


@pytest.mark.slow
def test_half_std_shift_in_one_of_30_features_is_detected(reference: Reference) -> None:
    detected = 0
    for seed in range(1000, 1000 + SEEDS):
        window = _window(seed)
        window["f13"] = window["f13"] + 0.5
        report = detect_drift(reference, window)
        detected += report.drifted and "f13" in report.drifted_features
    assert detected / SEEDS >= 0.95, f"detected in {detected} of {SEEDS} windows"


def test_a_new_category_is_always_reported() -> None:
    rng = np.random.default_rng(0)
    cats = np.array(["a", "b", "c", "d"], dtype=object)
    reference = Reference.from_columns({"c": rng.choice(cats, 10_000)}, source="ref")
    for seed in range(SEEDS):
        r = np.random.default_rng(seed)
        window = r.choice(cats, ROWS)
        window[r.integers(ROWS)] = "new"  # one row of 1,000
        report = detect_drift(reference, {"c": window})
        found = [f for f in report.findings if f.kind == "new_category"]
        assert len(found) == 1
        assert found[0].examples == ("new",)
        assert found[0].count == 1
