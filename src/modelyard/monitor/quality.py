"""Model quality from feedback: labels joined to predictions by request id, per window.

Point estimates come from scikit-learn's metrics; intervals from SciPy: Wilson for accuracy
(``scipy.stats.binomtest(...).proportion_ci``), a percentile bootstrap over labelled rows
(``scipy.stats.bootstrap``, paired) for the rest. Below ``min_labels`` labelled rows the numbers
are still reported (with their wide intervals) but ``sufficient`` is false and
:meth:`QualityReport.below`/:meth:`QualityReport.above` answer None: no verdict on too little
evidence.

Classification: accuracy, F1 (binary: of the positive class; else macro), and with scores (a
probability per row) ROC AUC, Brier score and expected calibration error (10 equal-width bins).
Regression: MAE, RMSE, R².
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidParameter
from modelyard.monitor.windows import Window, WindowInfo

if TYPE_CHECKING:
    import numpy as np

CLASSIFICATION = "classification"
REGRESSION = "regression"
ECE_BINS = 10


@dataclass(frozen=True)
class Metric:
    name: str
    value: float | None
    low: float | None
    high: float | None
    method: str  # "wilson" | "bootstrap" | "none"


@dataclass(frozen=True)
class LabelledWindow:
    """Labelled rows of a window: truth, prediction and (optional) score of the positive class,
    one entry per row; ``n_predictions`` counts every predicted row, labelled or not."""

    y_true: Any
    y_pred: Any
    y_score: Any = None
    n_predictions: int = 0
    window: WindowInfo | None = None


@dataclass(frozen=True)
class QualityReport:
    task: str
    n_labelled: int
    n_predictions: int
    min_labels: int
    sufficient: bool
    confidence: float
    metrics: tuple[Metric, ...]
    window: WindowInfo | None = None

    def metric(self, name: str) -> Metric | None:
        return next((m for m in self.metrics if m.name == name), None)

    def below(self, name: str, threshold: float) -> bool | None:
        """Whether ``name`` is below ``threshold``; None without enough labels or the metric."""
        m = self.metric(name)
        if not self.sufficient or m is None or m.value is None:
            return None
        return m.value < threshold

    def above(self, name: str, threshold: float) -> bool | None:
        m = self.metric(name)
        if not self.sufficient or m is None or m.value is None:
            return None
        return m.value > threshold

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["window"] = self.window.to_dict() if self.window else None
        for m in doc["metrics"]:
            for key in ("value", "low", "high"):
                if m[key] is not None and not math.isfinite(m[key]):
                    m[key] = None
        return doc

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> QualityReport:
        return cls(
            **{
                **data,
                "metrics": tuple(Metric(**m) for m in data["metrics"]),
                "window": WindowInfo.from_dict(data["window"]) if data.get("window") else None,
            }
        )


def _rows(value: Any, rows: int) -> list[Any] | None:
    if isinstance(value, list) and len(value) == rows:
        return value
    if rows == 1:
        return [value[0] if isinstance(value, list) and len(value) == 1 else value]
    return None


def join_feedback(
    window: Window,
    labels: Mapping[str, Any],
    *,
    prediction_key: str | None = None,
    score_key: str | None = None,
) -> LabelledWindow:
    """Join ``labels`` (request id → label, e.g. :func:`~modelyard.monitor.read_labels`) to the
    window's predictions. A request's label is one value per row (a list for multi-row
    requests). Outputs that are an object of named arrays use ``prediction_key`` (default: the
    first key without "prob"/"score" in its name) and ``score_key`` (default: the first with);
    class-probability rows give the score of the last class (the positive one in binary)."""
    import numpy as np
    import orjson

    y_true: list[Any] = []
    y_pred: list[Any] = []
    y_score: list[Any] = []
    table = window.table
    for rid, raw, rows in zip(
        table.column("request_id").to_pylist(),
        table.column("outputs").to_pylist(),
        table.column("rows").to_pylist(),
        strict=True,
    ):
        if rid not in labels:
            continue
        truth = _rows(labels[rid], int(rows))
        output = orjson.loads(raw)
        score = None
        if isinstance(output, dict):
            keys = list(output)
            pk = prediction_key or next(
                (k for k in keys if "prob" not in k and "score" not in k), keys[0]
            )
            sk = score_key or next((k for k in keys if "prob" in k or "score" in k), None)
            score = _rows(output[sk], int(rows)) if sk in output else None
            output = output.get(pk)
        pred = _rows(output, int(rows))
        if truth is None or pred is None:
            continue
        y_true.extend(truth)
        y_pred.extend(pred)
        if score is not None:
            y_score.extend(s[-1] if isinstance(s, list) else s for s in score)
    scores = np.asarray(y_score, dtype=np.float64) if len(y_score) == len(y_true) else None
    return LabelledWindow(
        np.asarray(y_true, dtype=object),
        np.asarray(y_pred, dtype=object),
        scores if y_true else None,
        n_predictions=window.info.rows,
        window=window.info,
    )


def _is_number(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool)


def _infer_task(y_true: np.ndarray) -> str:
    import numpy as np

    values = [v for v in y_true.tolist() if v is not None]
    if values and all(_is_number(v) for v in values):
        arr = np.asarray(values, dtype=np.float64)
        if not np.all(arr == np.round(arr)) or len(np.unique(arr)) > 20:
            return REGRESSION
    return CLASSIFICATION


def _label(v: Any) -> str:
    if isinstance(v, float) and v == int(v):
        v = int(v)
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _bootstrap(
    statistic: Callable[[np.ndarray], float], n: int, confidence: float, resamples: int, seed: int
) -> tuple[float | None, float | None]:
    import numpy as np
    from scipy import stats

    if n < 2:
        return None, None
    with warnings.catch_warnings():
        # Every resample giving one value (e.g. all predictions right) makes the interval
        # degenerate; that is an answer (a point), not a problem.
        warnings.simplefilter("ignore", stats.DegenerateDataWarning)
        result = stats.bootstrap(
            (np.arange(n),),
            statistic,
            n_resamples=resamples,
            confidence_level=confidence,
            method="percentile",
            vectorized=False,
            random_state=np.random.default_rng(seed),
        )
    low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
    if not (math.isfinite(low) and math.isfinite(high)):
        return None, None
    return low, high


def _ece(y: np.ndarray, p: np.ndarray) -> float:
    import numpy as np

    edges = np.linspace(0.0, 1.0, ECE_BINS + 1)
    which = np.clip(np.digitize(p, edges[1:-1]), 0, ECE_BINS - 1)
    total = 0.0
    for b in range(ECE_BINS):
        mask = which == b
        if mask.any():
            total += mask.mean() * abs(float(y[mask].mean()) - float(p[mask].mean()))
    return total


def evaluate_quality(
    labelled: LabelledWindow,
    *,
    task: str | None = None,
    min_labels: int = 100,
    confidence: float = 0.95,
    positive_label: Any = None,
    n_resamples: int = 200,
    seed: int = 0,
) -> QualityReport:
    """Quality metrics of one labelled window with ``confidence`` intervals.

    ``task`` is inferred when omitted (numbers with fractions or > 20 distinct values:
    regression). ``positive_label`` picks the F1/AUC positive class of a binary problem
    (default: ``1``/``true`` if present, else the last label in sorted order).
    """
    import numpy as np
    from scipy import stats
    from sklearn import metrics as skm

    if task not in (None, CLASSIFICATION, REGRESSION):
        raise InvalidParameter(f"task must be {CLASSIFICATION!r} or {REGRESSION!r}, not {task!r}")
    y_true = np.asarray(labelled.y_true, dtype=object)
    y_pred = np.asarray(labelled.y_pred, dtype=object)
    if len(y_true) != len(y_pred):
        raise InvalidParameter("y_true and y_pred must have one entry per row")
    task = task or _infer_task(y_true)
    n = len(y_true)
    out: list[Metric] = []

    def boot(name: str, fn: Callable[[np.ndarray], float], value: float) -> None:
        low, high = _bootstrap(fn, n, confidence, n_resamples, seed)
        out.append(Metric(name, value, low, high, "bootstrap" if low is not None else "none"))

    if n and task == REGRESSION:
        t = y_true.astype(np.float64)
        p = y_pred.astype(np.float64)
        boot("mae", lambda i: skm.mean_absolute_error(t[i], p[i]), skm.mean_absolute_error(t, p))
        boot(
            "rmse",
            lambda i: skm.root_mean_squared_error(t[i], p[i]),
            skm.root_mean_squared_error(t, p),
        )
        if n >= 2:
            boot("r2", lambda i: skm.r2_score(t[i], p[i]), skm.r2_score(t, p))
    elif n:
        t = np.array([_label(v) for v in y_true])
        p = np.array([_label(v) for v in y_pred])
        correct = int((t == p).sum())
        ci = stats.binomtest(correct, n).proportion_ci(confidence_level=confidence, method="wilson")
        out.append(Metric("accuracy", correct / n, float(ci.low), float(ci.high), "wilson"))
        classes = sorted(set(t.tolist()) | set(p.tolist()))
        if len(classes) <= 2:
            pos = (
                _label(positive_label)
                if positive_label is not None
                else next((c for c in ("1", "true") if c in classes), classes[-1])
            )
            boot(
                "f1",
                lambda i: skm.f1_score(
                    t[i], p[i], pos_label=pos, average="binary", zero_division=0
                ),
                skm.f1_score(t, p, pos_label=pos, average="binary", zero_division=0),
            )
            if labelled.y_score is not None and len(labelled.y_score) == n:
                s = np.asarray(labelled.y_score, dtype=np.float64)
                y = (t == pos).astype(np.int64)
                if 0 < y.sum() < n:
                    boot(
                        "roc_auc",
                        lambda i: (
                            skm.roc_auc_score(y[i], s[i]) if 0 < y[i].sum() < len(i) else math.nan
                        ),
                        skm.roc_auc_score(y, s),
                    )
                boot(
                    "brier", lambda i: skm.brier_score_loss(y[i], s[i]), skm.brier_score_loss(y, s)
                )
                boot("ece", lambda i: _ece(y[i], s[i]), _ece(y, s))
        else:
            boot(
                "f1_macro",
                lambda i: skm.f1_score(t[i], p[i], average="macro", zero_division=0),
                skm.f1_score(t, p, average="macro", zero_division=0),
            )
    metrics = tuple(
        Metric(m.name, float(m.value) if m.value is not None else None, m.low, m.high, m.method)
        for m in out
    )
    return QualityReport(
        task=task,
        n_labelled=n,
        n_predictions=max(labelled.n_predictions, n),
        min_labels=min_labels,
        sufficient=n >= min_labels,
        confidence=confidence,
        metrics=metrics,
        window=labelled.window,
    )
