"""Predictive maintenance: collect → validate → prepare → train → evaluate → register, and
featurize → predict: the production model scores the newest batch (batch scoring).

    modelyard pipeline run examples/maintenance/pipeline.py -p n_estimators=200

Each step is a plain function (call ``train(frame, n_estimators=10)`` in a notebook or a test);
the pipeline wires them by name: an argument named like another step's output receives it, an
argument with a default is a parameter.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelyard.batch import predict_step
from modelyard.pipeline import Pipeline, current_run, files, step
from modelyard.store.data_entities import DatasetVersion

if TYPE_CHECKING:
    # Only the steps need pandas, and they get it with their inputs: the orchestrator loading
    # this file to check what changed (a no-op re-run) never pays for importing it.
    import pandas as pd

FEATURES = [
    "operating_hours",
    "air_temp_k",
    "process_temp_k",
    "rpm",
    "torque_nm",
    "tool_wear_min",
    "vibration_mm_s",
    "pressure_bar",
    "temp_gap_k",
    "power_w",
    "strain",
]
TARGET = "failure"


@step(outputs="snapshot", reads=files("{incoming}/*.csv"))
def collect(incoming: str = "data/incoming", dataset_name: str = "sensors") -> DatasetVersion:
    """Snapshot the newest batch as a dataset version (an unchanged batch keeps its version).
    It reads the batches folder, so it is cached on the CSV files' content: a new or changed
    batch runs it again."""
    import modelyard.data

    batches = sorted(Path(incoming).glob("*.csv"))
    if not batches:
        raise FileNotFoundError(f"no *.csv batch in {Path(incoming).resolve()}")
    return modelyard.data.add(batches[-1], name=dataset_name).version


@step(outputs="batch")
def validate(snapshot: DatasetVersion, tolerance: float = 0.05) -> pd.DataFrame:
    """Check the batch's schema, categories and ranges against the first version's profile."""
    import modelyard.data

    reference = modelyard.data.show(f"{snapshot.name}@1")
    frame = modelyard.data.read_frame(snapshot.ref)
    problems = check_against_profile(frame, reference.profile or {}, tolerance)
    if problems:
        report = "\n".join(f"  - {p}" for p in problems)
        raise ValueError(
            f"batch {snapshot.ref} does not match reference {reference.ref}:\n{report}"
        )
    return frame


def check_against_profile(frame: pd.DataFrame, profile: dict[str, Any], tol: float) -> list[str]:
    problems = []
    columns = {c["name"]: c for c in profile.get("columns", [])}
    for name in sorted(set(columns) - set(frame.columns)):
        problems.append(f"column {name!r} is missing")
    for name in sorted(set(frame.columns) - set(columns)):
        problems.append(f"column {name!r} is new")
    for name, col in columns.items():
        if name not in frame.columns:
            continue
        values = frame[name]
        if col.get("logical_type") in {"integer", "float"} and "min" in col:
            span = (col["max"] - col["min"]) or 1.0
            low, high = col["min"] - tol * span, col["max"] + tol * span
            outside = ((values < low) | (values > high)).mean()
            if outside > 0.01:
                problems.append(
                    f"{name}: {outside:.1%} of values outside [{low:.4g}, {high:.4g}] "
                    f"(reference {col['min']:.4g}..{col['max']:.4g}, mean {col['mean']:.4g}; "
                    f"batch mean {values.mean():.4g})"
                )
        if col.get("logical_type") == "string" and col.get("top_exact"):
            known = {t["value"] for t in col.get("top", [])}
            new = sorted(set(values.dropna().astype(str)) - known)
            if new:
                share = values.astype(str).isin(new).mean()
                problems.append(f"{name}: unknown categories {new} in {share:.1%} of rows")
    return problems


def features(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    out["temp_gap_k"] = out["process_temp_k"] - out["air_temp_k"]
    out["power_w"] = out["torque_nm"] * out["rpm"] * 2 * 3.141592653589793 / 60
    out["strain"] = out["tool_wear_min"] * out["torque_nm"]
    for kind in ("L", "M", "H"):
        out[f"type_{kind}"] = (out["machine_type"] == kind).astype(int)
    return out[[*FEATURES, "type_L", "type_M", "type_H", TARGET]]


@step(outputs=("train_set", "test_set"))
def prepare(
    batch: pd.DataFrame, test_size: float = 0.25, seed: int = 42
) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    table = features(batch)
    train_set, test_set = train_test_split(
        table, test_size=test_size, random_state=seed, stratify=table[TARGET]
    )
    return train_set.reset_index(drop=True), test_set.reset_index(drop=True)


@step(outputs="model")
def train(
    train_set: pd.DataFrame, n_estimators: int = 100, max_depth: int = 8, seed: int = 42
) -> Any:
    from sklearn.ensemble import RandomForestClassifier

    model = RandomForestClassifier(
        n_estimators=n_estimators,
        max_depth=max_depth,
        class_weight="balanced",
        random_state=seed,
        n_jobs=1,
    )
    return model.fit(train_set.drop(columns=[TARGET]), train_set[TARGET])


@step(outputs="metrics")
def evaluate(model: Any, test_set: pd.DataFrame, min_roc_auc: float = 0.75) -> dict[str, float]:
    """Holdout metrics and a quality gate: a model below ``min_roc_auc`` stops the run."""
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    x, y = test_set.drop(columns=[TARGET]), test_set[TARGET]
    proba = model.predict_proba(x)[:, 1]
    metrics = {
        "accuracy": float(accuracy_score(y, proba >= 0.5)),
        "f1": float(f1_score(y, proba >= 0.5)),
        "roc_auc": float(roc_auc_score(y, proba)),
    }
    current_run().log_metrics(metrics)
    if metrics["roc_auc"] < min_roc_auc:
        raise ValueError(f"quality gate: ROC AUC {metrics['roc_auc']:.3f} < {min_roc_auc}")
    return metrics


@step(outputs="registered")
def register(
    model: Any, metrics: dict[str, float], test_set: pd.DataFrame, model_name: str = "maintenance"
) -> dict[str, Any]:
    """Hand the model over: logged as a model folder of this run, ready to be registered
    (``modelyard models register RUN maintenance``) or compared by the monitor's retrain."""
    return hand_over(model, metrics, model_name, test_set.drop(columns=[TARGET]).head(5))


def hand_over(
    model: Any, metrics: dict[str, float], name: str, example: pd.DataFrame
) -> dict[str, Any]:
    """The one place that knows how a model leaves the pipeline (thin on purpose)."""
    run = current_run().run
    if run is None:  # called outside a pipeline (a notebook, a test): nothing to record
        return {"name": name, "artifact": None, **metrics}
    from modelyard.models import log_model

    logged = log_model(run, model, "model", input_example=example)
    return {"name": name, "artifact": logged.digest, "run": logged.run_id, **metrics}


@step(outputs="to_score")
def featurize(batch: pd.DataFrame, snapshot: DatasetVersion) -> DatasetVersion:
    """The newest batch as the model sees it (plus ``machine_id`` to read the scores by), as a
    dataset version of its own: what the predict step scores."""
    return snapshot_features(batch, snapshot)


def snapshot_features(batch: pd.DataFrame, snapshot: DatasetVersion) -> DatasetVersion:
    import tempfile

    import modelyard.data

    table = features(batch).drop(columns=[TARGET])
    table.insert(0, "machine_id", batch["machine_id"].to_numpy())
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{snapshot.name}-{snapshot.version}-features.parquet"
        table.to_parquet(path, index=False)
        return modelyard.data.add(path, name=f"{snapshot.name}-features").version


# The production model scores the newest batch into `maintenance-scores` (skipped while no
# model is in production yet: the first run trains the first one). Policies stay with the
# monitor here: this pipeline is also what a retrain runs.
predict = predict_step(
    model="maintenance@production",
    output="maintenance-scores",
    input="to_score",
    columns=["machine_id"],
    monitor=False,
    if_no_model="skip",
)

pipeline = Pipeline(
    "maintenance",
    [collect, validate, prepare, train, evaluate, register, featurize, predict],
)
