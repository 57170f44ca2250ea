"""The two benchmark models, built identically in every venv (modelyard's and each peer's).

Only numpy and scikit-learn: this file is imported by ``run.py`` and, inside the peers' own
venvs, by ``peer_models.py``, so every server is given a model fitted on the same seeded data.
"""

from __future__ import annotations

from typing import Any

N_FEATURES = 10
#: The DataFrame-signature model's named columns (what most MLflow users send).
FRAME_COLUMNS = [f"f{i:02d}" for i in range(30)]


def training_data() -> tuple[Any, Any]:
    import numpy as np

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, N_FEATURES))
    y = (x[:, 0] + x[:, 1] > 0).astype(int)
    return x, y


def fitted_models() -> dict[str, Any]:
    """``lr``: scaled logistic regression; ``rf``: a 100-tree random forest."""
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x, y = training_data()
    models: dict[str, Any] = {
        "lr": make_pipeline(StandardScaler(), LogisticRegression()),
        "rf": RandomForestClassifier(n_estimators=100, random_state=0),
    }
    for model in models.values():
        model.fit(x, y)
    return models


def fitted_frame_model() -> tuple[Any, Any]:
    """A scaled logistic regression fitted on a DataFrame of 30 named float columns, and that
    frame (its first rows are the saved input example)."""
    import numpy as np
    import pandas as pd
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(2000, len(FRAME_COLUMNS))), columns=FRAME_COLUMNS)
    y = (frame["f00"] + frame["f01"] > 0).astype(int)
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(frame, y), frame
