"""Watching a served model: data and prediction drift, quality from feedback, availability,
and the reports that show them.

Everything here only *reads* — the prediction and feedback logs a server writes off the request
path, dataset profiles, and ``/metrics`` — so monitoring never slows serving. Results are frozen
dataclasses with ``to_dict()`` (JSON-safe) and ``from_dict()`` so callers can store them and
chart them later. Heavy libraries (numpy, scipy, pyarrow, rich) load inside the functions.
"""

from modelyard.monitor.availability import (
    AvailabilityEvent,
    AvailabilityReport,
    EndpointStatus,
    check_availability,
    parse_metrics,
)
from modelyard.monitor.drift import (
    DriftConfig,
    DriftReport,
    FeatureDrift,
    Finding,
    detect_drift,
    prediction_drift,
)
from modelyard.monitor.quality import (
    LabelledWindow,
    Metric,
    QualityReport,
    evaluate_quality,
    join_feedback,
)
from modelyard.monitor.reference import (
    FeatureReference,
    Reference,
    load_reference,
    training_dataset,
)
from modelyard.monitor.report_html import write_html_report
from modelyard.monitor.report_terminal import (
    render_availability,
    render_drift,
    render_quality,
)
from modelyard.monitor.windows import (
    Window,
    WindowInfo,
    iter_batches,
    iter_windows,
    latest_window,
    read_labels,
)

__all__ = [
    "AvailabilityEvent",
    "AvailabilityReport",
    "DriftConfig",
    "DriftReport",
    "EndpointStatus",
    "FeatureDrift",
    "FeatureReference",
    "Finding",
    "LabelledWindow",
    "Metric",
    "QualityReport",
    "Reference",
    "Window",
    "WindowInfo",
    "check_availability",
    "detect_drift",
    "evaluate_quality",
    "iter_batches",
    "iter_windows",
    "join_feedback",
    "latest_window",
    "load_reference",
    "parse_metrics",
    "prediction_drift",
    "read_labels",
    "render_availability",
    "render_drift",
    "render_quality",
    "training_dataset",
    "write_html_report",
]
