"""Run inside a peer's venv: save the benchmark models in that peer's own format.

    /tmp/bench-mlflow/bin/python peer_models.py mlflow OUT_DIR
    /tmp/bench-bentoml/bin/python peer_models.py joblib OUT_DIR

``mlflow`` writes ``OUT_DIR/{lr,rf}`` with ``mlflow.sklearn.save_model`` (what ``mlflow models
serve`` loads); ``joblib`` writes ``OUT_DIR/{lr,rf}.joblib`` for the BentoML service. These are
files this benchmark just wrote itself, so loading them with joblib is not unpickling anything
untrusted.
"""

from __future__ import annotations

import sys
from pathlib import Path

from bench_models import fitted_models, training_data


def main() -> None:
    kind, out = sys.argv[1], Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    x, _ = training_data()
    for name, model in fitted_models().items():
        if kind == "mlflow":
            import mlflow.sklearn

            mlflow.sklearn.save_model(
                model, str(out / name), input_example=x[:5], serialization_format="cloudpickle"
            )
        else:
            import joblib

            joblib.dump(model, out / f"{name}.joblib")


if __name__ == "__main__":
    main()
